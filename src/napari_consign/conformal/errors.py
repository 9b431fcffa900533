"""Errors raised by the conformal core, and the cancellation check long work shares.

Every message says what is wrong and what to do about it; the CLI and the widget show it as is.
"""


class ConformalInputError(ValueError):
    """Inputs that cannot be calibrated or evaluated as given (shapes, ranges, NaN, empty sets)."""


class InfeasibleAlphaError(ConformalInputError):
    """The error level alpha is too small for the number of usable calibration units."""


class Cancelled(Exception):
    """Long work (training, calibration) was cancelled by the user."""


def is_cancelled(cancel: object | None) -> bool:
    """True when ``cancel`` (None, a ``threading.Event``, a callable or a flag) asks to stop."""
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    if is_set is not None:
        return bool(is_set())
    return bool(cancel()) if callable(cancel) else bool(cancel)
