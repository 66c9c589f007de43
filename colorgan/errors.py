"""The errors a user can act on: one line on stderr, no traceback (config.run_command)."""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing data, wrong checkpoint): shown without traceback."""


def first_line(error: Exception) -> str:
    """An error's message as one line of a user's error: its first line, at most 300 characters."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
