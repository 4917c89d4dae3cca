"""The one exception type that reaches users as a one-line message instead of a traceback."""


class MinibatchError(ValueError):
    """Bad input or an unavailable resource: the CLI prints ``str(err)`` on one line and exits non-zero."""
