"""The one error type the training command reports to its user instead of a traceback."""


class UsageError(Exception):
    """A problem with the user's input or options; reported as one line, exit code 2, no traceback."""
