"""The one exception type for failures a user should see as `Error: ...`.

The CLI catches `ForecastError` once, prints its message on one line to stderr and
exits with `exit_code` (see ../GUIDE: 1 run-time failure, 2 usage/config, 130 interrupted).
Long work (a download, training, a backtest) takes a `StopRequest` from its caller and stops soon once it is set.
"""

import datetime as dt
import reprlib
from typing import Protocol


class ForecastError(Exception):
    """A failure the user can act on; the message says what went wrong and what to do."""

    exit_code = 1


class UsageError(ForecastError):
    """Bad command-line usage or configuration (exit code 2)."""

    exit_code = 2


class Interrupted(ForecastError):
    """Ctrl-C: what could be saved was saved (exit code 130)."""

    exit_code = 130


class StopRequest(Protocol):
    """A caller's request that work stop soon (the CLI sets one on Ctrl-C); `threading.Event` is one."""

    def is_set(self) -> bool: ...


# How much of a bad value a message quotes: enough to recognise it, never a megabyte line.
QUOTE_LIMIT = 40


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut; control characters (an ANSI
    escape in a file's header) are shown as escapes, never sent to the terminal."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return cut if cut.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in cut)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A short, plain rendering of a bad value for a message: strings quoted, numbers as Python writes them
    (never `np.float64(inf)`), containers abridged, everything cut at `limit` characters."""
    if value is None:
        return "nothing"
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a numpy scalar: its plain Python number
    if isinstance(value, str):
        # Cut inside the quotes, so a long value still reads as one quoted string: 'xxxx…'.
        return repr(shorten(value, limit - 2))
    elif isinstance(value, dt.date):
        text = value.isoformat()
    elif isinstance(value, bool | float):
        text = str(value)
    elif isinstance(value, int):
        # str() of a huge int raises past 4300 digits (and is no use in a message anyway).
        digits = int(value.bit_length() * 0.30103)  # log10(2)
        text = str(value) if digits < 40 else f"an integer of about {digits} digits"
    else:
        text = _ABRIDGED.repr(value)
    return shorten(text, limit)


def _abridged() -> reprlib.Repr:
    # reprlib never renders more than a few items or levels, so even a huge or deeply nested value is cheap.
    abridged = reprlib.Repr()
    abridged.maxlevel, abridged.maxlist, abridged.maxtuple, abridged.maxdict = 3, 5, 5, 4
    abridged.maxstring = abridged.maxother = abridged.maxlong = QUOTE_LIMIT
    return abridged


_ABRIDGED = _abridged()
