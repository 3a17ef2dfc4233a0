"""The error a user can fix, importable without torch (scripts that only read YAML use it too)."""


class UserError(Exception):
    """A problem the user can fix (bad config value, missing file); train.py prints it as one line."""
