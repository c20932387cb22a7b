"""The one exception type for failures a user should see as `Error: ...`.

The CLI catches `ForecastError` once, prints its message on one line to stderr and
exits with `exit_code` (see ../GUIDE: 1 run-time failure, 2 usage/config, 130 interrupted).
"""


class ForecastError(Exception):
    """A failure the user can act on; the message says what went wrong and what to do."""

    exit_code = 1


class UsageError(ForecastError):
    """Bad command-line usage or configuration (exit code 2)."""

    exit_code = 2


class Interrupted(ForecastError):
    """Ctrl-C: what could be saved was saved (exit code 130)."""

    exit_code = 130
