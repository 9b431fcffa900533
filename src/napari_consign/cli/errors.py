"""The one error type the command line turns into exit code 2 and a one-line reason."""


class CLIError(Exception):
    """Bad arguments or input files; the message is printed as is."""
