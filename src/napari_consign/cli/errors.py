"""The one error type the command line turns into exit code 2 and a one-line reason."""

from __future__ import annotations


class CLIError(Exception):
    """Bad arguments or input files; the message is printed as is."""


def model_failures() -> tuple[type[BaseException], ...]:
    """What a user's model can raise on real slices (after passing the load-time probe):
    torch errors (``RuntimeError``, TorchScript's ``torch.jit.Error``) and index errors."""
    import torch

    return (RuntimeError, IndexError, torch.jit.Error)
