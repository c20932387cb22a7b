"""How every command talks to the terminal: stdout and stderr, one-line errors and warnings, `--json`, signals.

Every user-facing failure is a `ForecastError`, caught once in `ForecastGroup.main`, printed as one
`Error: ...` line on stderr; Python warnings print as one `Warning: ...` line each. The Typer classes live
here rather than in cli.py because the group's `main` is that error boundary: it uses `fail`, the warning
hook and HOSTILE_INPUT, which stay private to this module, and cli.py keeps only the commands and their
options. OneValueOptions comes along because the group is built on it and every command shares it.

Ctrl-C, SIGTERM and SIGHUP: while `train`, `compare` or `evaluate` works (waiting for a cache lock, downloading,
training until the bundle is in place, a backtest), the first one asks the work to stop soon: a wait ends at
once with nothing written, training after the current batch, keeping the best epoch; the command then exits
128 + the signal's number (130, 143, 129). The second one gets the signal's usual effect at once.

Nothing here imports torch, pandas or yfinance: cli.py imports this module for `--help`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup, TyperOption

from lstm_forecast.errors import ForecastError, Interrupted
from lstm_forecast.files import json_text


class ProgressConsole(Console):
    """stderr, where the progress goes: bars that redraw on a terminal, plain lines anywhere else.

    rich takes FORCE_COLOR (which many CI systems set) to mean a terminal, and would then fill a log with
    redrawn bars, cursor moves and carriage returns; here only a stream that is a terminal is one (or one
    declared so with TTY_COMPATIBLE=1). Its file is looked up at each use, so a redirected sys.stderr counts.
    """

    @property
    def is_terminal(self) -> bool:
        declared = os.environ.get("TTY_COMPATIBLE", "")
        if declared in ("0", "1"):
            return declared == "1"
        try:
            return bool(self.file.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed file
            return False


# soft_wrap: a summary line piped to a file stays one line (paths are never broken at 80 columns);
# piped tables get 100 columns rather than rich's 80, terminals their own width.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 100)
stderr = ProgressConsole(stderr=True, highlight=False, soft_wrap=True)
# `runs` and the screener: on a terminal its width (paths and verdicts wrap); piped, their natural width whatever
# the terminal, so a script reading them never finds a cell folded (tables.FitTable pads no line with spaces).
listing = stdout if sys.stdout.isatty() else Console(highlight=False, soft_wrap=True, width=10_000)


# Exceptions a parser can raise on hostile input (YAML nested 100,000 deep, a number too large for a
# float, an input too large for memory) that nothing closer to the input turned into a ForecastError.
HOSTILE_INPUT = {
    RecursionError: "the input is nested too deeply to read",
    MemoryError: "out of memory: the input (or the model it describes) is too large",
    OverflowError: "a number in the input is too large",
}


class OneValueOptions:
    """Command behaviour shared by the group and every command.

    An option that takes one value, given twice, is an error (click would keep the last one silently,
    so `train -t TSLA -t AAPL` would train AAPL alone); flags show no `<bool>` value in the help, the help text
    wraps at the terminal's width (see reflowed), and a docstring's closing `Examples:` paragraph is shown after
    the options, where a reader finishing the help looks.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        text, examples_heading, examples = inspect.cleandoc(self.help or "").partition("\n\nExamples:")
        self.help = reflowed(text) if self.help else self.help
        if examples_heading and not self.epilog:
            self.epilog = "Examples:" + examples

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))  # type: ignore[attr-defined]
            counts = Counter(param for param in order if _takes_one_value(param))
            for param, times in counts.items():
                if times > 1:
                    name = max(param.opts, key=len)
                    given = "twice" if times == 2 else f"{times} times"
                    ctx.fail(f"{name} given {given}; it takes one value")
        return super().parse_args(ctx, args)  # type: ignore[misc]

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""  # Typer would show `<bool>`, as if the flag took a value
            if isinstance(param, TyperOption) and not param.count:
                # Only the help reads these (the bounds are checked from the option's declaration, and a value
                # outside them is an error that states them): `N [1<=x<=10000000]` would leave the help text
                # a narrow column at 80 columns.
                param.min = param.max = None
        return params


def reflowed(text: str | None) -> str | None:
    """A docstring as one line per paragraph, so the help wraps at the terminal's width rather than at the source's
    line breaks (Typer's rich mode keeps them); an indented line (an example command) keeps a line of its own."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.startswith(" ") and not lines[-1].startswith(" "):
                lines[-1] += " " + line
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _takes_one_value(param: Any) -> bool:
    return isinstance(param, TyperOption) and not (param.multiple or param.is_flag or param.count)


class ForecastCommand(OneValueOptions, TyperCommand):
    """Every command of the tool (see OneValueOptions)."""


class ForecastGroup(OneValueOptions, TyperGroup):
    """Runs a command and turns every failure into one `Error: ...` line and the guide's exit code."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # numpy's floating-point RuntimeWarnings (overflow, invalid value) are about values the code
            # checks itself and reports as errors when they matter; the source line they print is noise.
            warnings.simplefilter("ignore", RuntimeWarning)
            code = self._run(args, prog_name, complete_var, **extra)
        sys.exit(code if isinstance(code, int) else 0)

    def _run(self, args: Any, prog_name: Any, complete_var: Any, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            if code == 130:  # Typer turned a Ctrl-C outside training into a bare exit code
                code = fail("interrupted", 130)
        except ForecastError as exc:
            code = fail(str(exc), exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            code = fail("interrupted", 130)
        except OSError as exc:
            code = fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", 1)
        except tuple(HOSTILE_INPUT) as exc:
            code = fail(next(text for kind, text in HOSTILE_INPUT.items() if isinstance(exc, kind)), 1)
        except Exception as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was shown: not an error
                code = 0
            elif hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
                # Typer's own usage errors (missing option, bad value): same one-line format.
                context = getattr(exc, "ctx", None)
                message = exc.format_message().rstrip()
                if context is not None:
                    end = "" if message.endswith((".", ")", "?")) else "."
                    message += f"{end} See '{context.command_path} --help'."
                code = fail(message, exc.exit_code)
            else:  # a bug: still one line, the traceback on request
                detail = f"unexpected {type(exc).__name__}: {exc}"
                code = fail(f"{detail} (set LSTM_FORECAST_DEBUG=1 for the traceback)", 1)
        return code


def fail(message: str, exit_code: int) -> int:
    """Print one error line (and the traceback when LSTM_FORECAST_DEBUG=1); return the exit code."""
    if os.environ.get("LSTM_FORECAST_DEBUG") == "1" and sys.exc_info()[0] is not None:
        traceback.print_exc()
    first_line = " ".join(message.split())
    print(f"Error: {first_line}", file=sys.stderr)
    return exit_code


def note(message: str) -> None:
    """A line of our own on stderr, printed as it is (a path like `data [old]/x` is not rich markup)."""
    stderr.print(message, markup=False)


def warn(messages: list[str]) -> None:
    for message in messages:
        stderr.print(f"[yellow]Warning:[/] {escape(message)}")  # messages quote paths and file contents


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A Python warning as one line, without the source line a library warning would print."""
    warn([" ".join(str(message).split())[:300]])


def print_json(document: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout, nothing else there."""
    sys.stdout.write(json_text(document))


class SignalStop:
    """A stop request (`is_set()`, as the trainer takes it) set by the first Ctrl-C, SIGTERM or SIGHUP."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def is_set(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signal or signal.SIGINT)


STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]


@contextmanager
def stop_on_signals() -> Iterator[SignalStop]:
    """While active, the first stop signal sets the yielded request; the second gets its usual effect
    (KeyboardInterrupt for Ctrl-C, the end of the process for SIGTERM and SIGHUP), at once.

    An `Interrupted` error leaving the block takes the signal's exit code. Only the main thread may
    install signal handlers; elsewhere the request is never set and signals keep their effect.
    """
    stop = SignalStop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[int, Any] = {}

    def request_stop(signum: int, frame: object) -> None:
        if stop.is_set():
            _restore(previous)
            signal.raise_signal(signum)
            return
        stop.signal = signum

    # A signal the caller ignores stays ignored: under `nohup` (SIGHUP) or in a background job (SIGINT)
    # closing the terminal must not stop the training.
    watched = [number for number in STOP_SIGNALS if signal.getsignal(number) is not signal.SIG_IGN]
    previous.update({number: signal.signal(number, request_stop) for number in watched})
    try:
        yield stop
    except Interrupted as exc:
        exc.exit_code = stop.exit_code
        raise
    finally:
        # What was printed inside the block reaches its pipe or file before a signal can kill us: a
        # block-buffered stdout would otherwise be lost, cutting a table or a --json document short.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        _restore(previous)


def _restore(handlers: dict[int, Any]) -> None:
    for number, handler in handlers.items():
        # None: a handler not installed from Python, which cannot be put back; the default is closest.
        signal.signal(number, signal.SIG_DFL if handler is None else handler)
