"""Errors raised by the conformal core.

Every message says what is wrong and what to do about it; the CLI and the widget show it as is.
"""


class ConformalInputError(ValueError):
    """Inputs that cannot be calibrated or evaluated as given (shapes, ranges, NaN, empty sets)."""


class InfeasibleAlphaError(ConformalInputError):
    """The error level alpha is too small for the number of usable calibration units."""


class Cancelled(Exception):
    """Long work (training, calibration) was cancelled by the user."""
