"""Hyper-parameter search with Optuna that cannot overfit the test period.

Reads top to bottom: plan (every check before any trial) → the study (created or resumed in its storage) →
trials (each samples the space, trains and scores the VALIDATION windows) → the files (trials.csv, best.yaml,
tune.png) → once, the honest number: the best config retrained and scored on the test period (its run reused
when one was trained with exactly that config on exactly today's rows: the same bundle again).

The honesty rules:
  * A trial's objective is the validation period's RMSE ratio to the naive forecast on prices (day 1 or all
    days), never the scaled training loss (trials with different inputs are not comparable in scaled units)
    and never the test period: a trial builds the dataset, trains on the training windows with early
    stopping on the validation windows, and scores the validation windows; the test windows are never scored.
    With several tickers it is the pooled ratio over every ticker's validation windows (scale-free).
  * `cv_folds` K: the mean over K walk-forward blocks of the validation period's length that end where the test
    period starts, each scored by a model trained on the days before it (backtest.plan_folds/fold_dataset on
    prices cut off before the test period), so the choice is less tied to one validation year.
  * The best of N trials on validation is optimistic by construction; the one unbiased figure is the test
    score of the retrained best config, reported beside it.

Pruning: Optuna's MedianPruner on the per-epoch validation loss, through the trainer's `on_epoch` callback,
which ends a hopeless trial's training; the trial is then recorded as pruned.

Storage: a study lives in a SQLite file in the study folder (`study.db`), or in a journal file there
(`journal.log`) once several local processes share it (`--jobs N`: SQLite is not safe for that; a SQLite study
is moved into a journal the first time), or in any database `--storage URL` names (many machines). A local
study is locked by the process searching it, so at start any trial still RUNNING was left by a dead process:
it is marked failed (`abandoned`) and not counted. A database study uses Optuna's heartbeat for the same end.
A study records its space, tickers, objective and base config, and refuses to continue under other ones.

A local study's files are the user's finished trials, so: the lock is taken before any of them is opened; each is
checked before Optuna touches it (a regular file within a bound: SQLite's header and an Optuna schema that passes
SQLite's quick check, read-only; a journal whose every line is a JSON object of an Optuna operation), so a damaged,
special or foreign file is one `Error:` line naming it; a study is loaded before it is ever created (Optuna's
journal appends a line on every `create_study`), so a study refused for another space or objective is left
byte-identical; and the move into a journal is published whole by a rename, only after the study was accepted.

Seeds: the sampler is Optuna's TPE seeded from (`seed`, the worker i of --jobs N, the number of trials the study
held when this search began), so a resumed study draws new points rather than its first ones again, and the same
history and seed draw the same ones; every trial trains with the config's train.seed (a seed ensemble of
train.seeds members, as `train` would) and the same thread count, so a sequential study repeats exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import sqlite3
import stat
import time
import urllib.parse
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lstm_forecast import backtest, context, data, plots, scoring, windows
from lstm_forecast.bundle import BUNDLE_FILE, list_runs, load_run
from lstm_forecast.config import SEARCH_SPACE, Config, config_hash, packaged_config
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError, quote, shorten
from lstm_forecast.executors import PlainJob, run_in_workers
from lstm_forecast.files import atomic_write_text, fsync_dir, open_regular, read_bounded
from lstm_forecast.model import check_trainable, ensemble_of
from lstm_forecast.prices import prices_sha256
from lstm_forecast.runs import RunHead, TrainingHead, checked_record
from lstm_forecast.search_space import SearchSpace, load_space, with_values
from lstm_forecast.train import load_training_prices, member_labels, pooled_ratio, train_members, train_run
from lstm_forecast.trainer import training_threads
from lstm_forecast.universe import threads_per_job

DEFAULT_SPACE = packaged_config(SEARCH_SPACE)  # lstm_forecast/configs/search.yaml, in the wheel too
TUNE_DIR = "tune"  # <runs-dir>/tune/<study>/
SQLITE_FILE, JOURNAL_FILE, LOCK_FILE = "study.db", "journal.log", "study.lock"
JOURNAL_LOCK_SUFFIX = ".lock"  # Optuna's lock while it appends to journal.log: a symlink journal.log.lock
TRIALS_FILE, BEST_FILE, PLOT_FILE = "trials.csv", "best.yaml", "tune.png"
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
OBJECTIVES = {"h1": "day 1", "all": "all horizon days"}
DEFAULT_TRIALS = 20

# MedianPruner: a trial is pruned when its validation loss at an epoch is worse than the median of the finished
# trials' at the same epoch, once PRUNE_AFTER_TRIALS trials have finished and after its first PRUNE_WARMUP_EPOCHS.
PRUNE_AFTER_TRIALS = 5
PRUNE_WARMUP_EPOCHS = 2
# A database study (many machines): a trial whose process stopped beating for GRACE_S is failed by the next one.
HEARTBEAT_S, GRACE_S = 60, 180
DB_CONNECT_TIMEOUT_S = 10  # an unreachable database should fail in seconds, not libpq's minutes
POLL_S = 0.5  # how often the parent of --jobs N looks at the study and its stop request
# A journal is replayed whole into memory on every open (Optuna): 16 MiB is some 2,000 trials of 100 epochs. Optuna
# copies a trial's attributes and epoch values at each of their operations, so replay time grows with the square
# of one trial's operations: at most MAX_TRIAL_OPERATIONS each (a trial reports one value per epoch of each ticker
# × fold × seed, e.g. 50 epochs of 150 such units) keeps a hostile journal's replay to seconds.
JOURNAL_LIMIT = 16 << 20
MAX_TRIAL_OPERATIONS = 10_000
STUDY_ATTR_OPERATIONS = (2, 3)  # Optuna's SET_STUDY_USER_ATTR, SET_STUDY_SYSTEM_ATTR: bounded as one trial's
SQLITE_LIMIT = 4 << 30  # SQLite reads pages, not the file: the bound only stops a runaway (sparse) file
SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "trials", "version_info"}
AFRESH = "; move it away to start the study afresh"  # the advice of a damaged study file's error
# What Optuna raises while replaying or loading a damaged study (its storages check little themselves).
STORAGE_DAMAGE = (ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError, RuntimeError)


class TrialFailed(Exception):
    """A trial that failed in a way the search survives (diverged, too few rows for its lookback): recorded as
    failed with its reason, and the search goes on."""


class StudyBusy(ForecastError):
    """A SQLite study another process keeps locked while it is checked: busy, not damaged."""


class Pruned(Exception):
    """The pruner ended a trial's training (raised inside a trial, turned into optuna.TrialPruned)."""


# --- where a study lives --------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyStore:
    """A study's storage: a file in the study folder (SQLite or journal), or a database URL (`--storage`)."""

    url: str | None = None
    journal: Path | None = None
    sqlite: Path | None = None

    @property
    def local(self) -> bool:
        """A file of this machine, searched by one `tune` process at a time (it holds the study's lock)."""
        return self.url is None

    def describe(self) -> str:
        if self.url is not None:
            return _hide_password(self.url)
        return str(self.journal or self.sqlite)

    def open(self) -> Any:
        """The Optuna storage; a database that cannot be reached or a URL that is not one is a one-line error.
        A local file is opened as it is: `ready_study` has checked it (under the lock) before."""
        import optuna
        import sqlalchemy.exc

        if self.journal is not None:
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(self.journal)))
        if self.sqlite is not None:
            return optuna.storages.RDBStorage(f"sqlite:///{self.sqlite}")
        url = self.url or ""
        shown = quote(_hide_password(url), 80)
        dialect = self.dialect()
        engine: dict[str, Any] = {}
        if dialect in ("postgresql", "mysql"):
            engine["connect_args"] = {"connect_timeout": DB_CONNECT_TIMEOUT_S}
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna, and has been for years
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S)
        except ImportError:
            raise ForecastError(f"--storage {shown}: its database driver is not installed; install it, e.g. "
                                "pip install psycopg2-binary for postgresql://") from None
        except sqlalchemy.exc.NoSuchModuleError:
            raise UsageError(f"--storage {shown}: unknown database {quote(dialect)}; expected e.g. "
                             "postgresql://… or sqlite:///…") from None
        except (sqlalchemy.exc.SQLAlchemyError, *STORAGE_DAMAGE, OSError) as exc:
            raise ForecastError(f"cannot open the study storage {shown}: {_reason(exc)}") from None

    def dialect(self) -> str:
        """The database kind of `--storage` (postgresql, sqlite, …); a usage error for a URL that is not one, or
        for a database in memory: a study that vanishes when the process ends is not a study."""
        import sqlalchemy.exc

        url = self.url or ""
        shown = quote(_hide_password(url), 80)
        try:
            parsed = sqlalchemy.engine.make_url(url)
            dialect = parsed.get_backend_name()
        except (sqlalchemy.exc.ArgumentError, ValueError):
            raise UsageError(f"--storage {shown}: not a database URL; expected e.g. "
                             "postgresql://user:password@host/db or sqlite:///path/study.db") from None
        if dialect == "sqlite" and (parsed.database in (None, "", ":memory:") or "memory" in str(parsed.query)):
            raise UsageError(f"--storage {shown}: a database in memory is lost when tune ends; name a file, e.g. "
                             "sqlite:///path/study.db, or leave --storage out (a file in the study folder)")
        return dialect

    def sqlite_file(self) -> Path | None:
        """The file of a SQLite study: the study folder's, or a `--storage sqlite:///path` one."""
        if self.sqlite is not None or self.url is None:
            return self.sqlite
        import sqlalchemy

        parsed = sqlalchemy.engine.make_url(self.url)
        return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def _reason(exc: BaseException) -> str:
    """An exception of a storage as one short line (SQLAlchemy's own text, without its SQL and links)."""
    text = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
    return shorten(text, 200)


def _hide_password(url: str) -> str:
    """A database URL as it may be printed: `postgresql://user:***@host/db`."""
    import sqlalchemy.exc

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def local_store(folder: Path, jobs: int) -> StudyStore:
    """The study folder's storage: the journal once it exists (a link or a special file there too: it is checked,
    never passed over) or several processes share it, else SQLite. Opens and changes nothing: a SQLite study is
    moved into the journal under the lock (`ready_study`)."""
    journal = folder / JOURNAL_FILE
    if jobs > 1 or os.path.lexists(journal):
        return StudyStore(journal=journal)
    return StudyStore(sqlite=folder / SQLITE_FILE)


def check_study_file(path: Path, kind: str) -> None:
    """Refuse a study file (`kind` sqlite or journal) Optuna must not open: not a regular file (a directory, a
    FIFO, a link to a device or to nothing), too large, empty, or not what it should be inside. Reads only, and
    at most its bound; a missing file (a new study) passes."""
    if not os.path.lexists(path):
        return
    what = "a SQLite study database" if kind == "sqlite" else "an Optuna study journal"
    try:
        problem = _sqlite_problem(path, what) if kind == "sqlite" else _journal_problem(path, what)
    except FileNotFoundError:
        problem = f"{path}: a link to a file that does not exist{AFRESH}"
    except StudyBusy:
        raise
    except ForecastError as exc:  # not a regular file, too large, unreadable
        problem = f"{exc}{AFRESH}"
    if problem is not None:
        raise ForecastError(f"damaged study file {problem}")


def _sqlite_problem(path: Path, what: str) -> str | None:
    with open_regular(path, ForecastError, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        header = handle.read(len(SQLITE_HEADER))
    if size > SQLITE_LIMIT:
        return f"{path}: {size:,} bytes, more than {what} can be ({SQLITE_LIMIT:,} bytes at most){AFRESH}"
    if header != SQLITE_HEADER:
        return f"{path}: {'empty' if not size else 'not a SQLite database'}, expected {what}{AFRESH}"
    # Read-only (mode=ro): checking a study never changes it. SQLite's quick check reads every page once.
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=DB_CONNECT_TIMEOUT_S)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            return f"{path}: {shorten(str(exc), 120)}{AFRESH}"
        raise StudyBusy(f"study database {path} is locked by another process (a --storage study shared with "
                        f"another machine's tune?) for over {DB_CONNECT_TIMEOUT_S} s; run again") from None
    except sqlite3.Error as exc:
        return f"{path}: {shorten(str(exc), 120)}{AFRESH}"
    if verdict is None or verdict[0] != "ok":
        return f"{path}: SQLite finds it damaged ({shorten(str(verdict and verdict[0]), 80)}){AFRESH}"
    if not OPTUNA_TABLES.issubset(tables):
        return f"{path}: a SQLite database without Optuna's tables, expected {what}{AFRESH}"
    return None


def _journal_problem(path: Path, what: str) -> str | None:
    text = read_bounded(path, JOURNAL_LIMIT, what)
    if not text:
        return f"{path}: empty, expected {what}{AFRESH}"
    lines = text.split(b"\n")
    if lines[-1]:  # Optuna would append its next line to this fragment, damaging both
        return (f"{path}: its last line is cut off (a process killed while writing it?); remove that line to "
                "resume the study (the trial it began is lost, every other one is kept)")
    per_trial: Counter[int] = Counter()
    for number, line in enumerate(lines[:-1], start=1):
        try:
            operation = json.loads(line)
        except (ValueError, RecursionError):
            operation = None
        if not (isinstance(operation, dict) and type(operation.get("op_code")) is int
                and type(operation.get("trial_id", 0)) is int):
            shown = quote(line.decode("utf-8", "replace"))
            return f"{path}: line {number} is not an Optuna journal operation ({shown}){AFRESH}"
        trial = operation.get("trial_id", -1 if operation["op_code"] in STUDY_ATTR_OPERATIONS else None)
        if trial is None:  # creating a study or a trial: replayed in constant time
            continue
        per_trial[trial] += 1
        if per_trial[trial] > MAX_TRIAL_OPERATIONS:
            return (f"{path}: line {number} is operation {per_trial[trial]:,} of one trial, more than a study of "
                    f"ours writes ({MAX_TRIAL_OPERATIONS:,} at most){AFRESH}")
    return None


def move_to_journal(folder: Path) -> None:
    """Copy a SQLite study into a journal (for --jobs N), published whole by a rename after an fsync, then drop
    study.db. Killed midway, study.db stays the study (the partial journal is replaced next time); killed after
    the rename, the journal is (`local_store` takes it first)."""
    import optuna

    sqlite, journal = folder / SQLITE_FILE, folder / JOURNAL_FILE
    partial = folder / f".{JOURNAL_FILE}.partial"
    try:
        partial.unlink(missing_ok=True)
        source = StudyStore(sqlite=sqlite).open()
        target = StudyStore(journal=partial).open()
        for summary in optuna.get_all_study_summaries(source):
            optuna.copy_study(from_study_name=summary.study_name, from_storage=source, to_storage=target)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, journal)
        fsync_dir(journal.parent)  # the journal's name on disk before the database goes: a crash keeps one of them
        sqlite.unlink()
    except OSError as exc:
        raise ForecastError(f"cannot move study {sqlite} into a journal for --jobs: {_reason(exc)}") from None


def ready_study(setup: TuneSetup) -> None:
    """Under the study's lock, before the search opens it: check its files, and for --jobs N move a SQLite study
    into the journal, once it is known to be this search's study (a refused one is left as it was)."""
    sqlite = setup.store.sqlite_file()
    if sqlite is not None:
        check_study_file(sqlite, "sqlite")
    if setup.store.journal is None:
        return
    check_study_file(setup.store.journal, "journal")
    clear_stale_journal_lock(setup.store.journal)
    old = setup.folder / SQLITE_FILE
    if not os.path.lexists(setup.store.journal) and os.path.lexists(old):
        check_study_file(old, "sqlite")
        open_study(dataclasses.replace(setup, store=StudyStore(sqlite=old)))  # refuses another space, untouched
        move_to_journal(setup.folder)


def clear_stale_journal_lock(journal: Path) -> None:
    """Remove Optuna's append lock of a journal (a symlink `journal.log.lock`, held only while a line is written)
    left by a process killed while writing: under the study's lock no process of ours holds it, and Optuna would
    wait 30 s before taking it over (forever, were it a directory, which is refused instead)."""
    path = journal.with_name(journal.name + JOURNAL_LOCK_SUFFIX)
    if not os.path.lexists(path):
        return
    if not stat.S_ISLNK(os.lstat(path).st_mode):
        raise ForecastError(f"{path} is not Optuna's journal lock (a symbolic link); move it away and run tune again")
    path.unlink()


# --- the plan: every check before any trial ---------------------------------------------------------


@dataclass(frozen=True)
class TuneSetup:
    """What every trial needs, as plain data that pickles to a worker process."""

    config: Config  # the base config (as given: best.yaml is it plus the best values)
    space: SearchSpace
    tickers: tuple[str, ...]
    data_dir: Path
    folder: Path  # <runs-dir>/tune/<study>/: the files, the lock, a local study's storage
    study: str
    store: StudyStore
    objective: str  # h1 or all
    cv_folds: int  # 0: the validation period; K: K walk-forward blocks before the test period
    seed: int  # the sampler's
    threads: int  # torch threads of every trial (and of the retrained best)

    def trial_config(self, values: dict[str, Any], source: str) -> Config:
        config = with_values(self.config, values, source)
        return config.model_copy(update={"train": config.train.model_copy(update={"threads": self.threads})})

    def identity(self) -> dict[str, Any]:
        """What a study is made for; continuing it under anything else would mix incomparable trials. The
        base config is hashed with the space's keys fixed, so only the keys the trials share count."""
        fixed = {d.key: d.low if d.kind != "choice" else d.choices[0] for d in self.space.dimensions}
        return {"space_digest": self.space.digest(), "tickers": list(self.tickers), "objective": self.objective,
                "cv_folds": self.cv_folds, "config_hash": config_hash(with_values(self.config, fixed, "space"))}


def default_study_name(tickers: list[str]) -> str:
    name = "-".join(data.cache_name(ticker).lstrip("^") for ticker in tickers)
    return name if len(name) <= 64 else f"{tickers[0].lstrip('^')}-and-{len(tickers) - 1}-more"


def plan_tune(
    config: Config, tickers: list[str], data_dir: Path, runs_dir: Path, space_path: Path | None = None,
    study: str | None = None, storage: str | None = None, jobs: int = 1, objective: str = "h1",
    cv_folds: int = 0, seed: int | None = None, threads: int | None = None,
    on_fetch: Callable[[str], None] | None = None, stop: StopRequest | None = None,
) -> TuneSetup:
    """Check everything a search needs, before any trial: the space against the config schema, the model's
    memory at the space's largest sizes, the prices of every ticker (fetched when not cached), the cv folds,
    the study name and its storage. `threads` of None: train.threads, else the cores shared by the jobs."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UsageError("tune needs Optuna: pip install 'lstm-forecast[tune]' (or pip install 'optuna>=4')") from None
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective {quote(objective)}: expected one of {', '.join(OBJECTIVES)}")
    if config.model.scope != "local":
        raise UsageError("tune searches local models (one per ticker); set model.scope local")
    space = load_space(space_path or DEFAULT_SPACE, config)
    highs = {d.key: d.high for d in space.dimensions if d.kind != "choice"}
    check_trainable(with_values(config, highs, space.source))
    name = study or default_study_name(tickers)
    if not STUDY_NAME.fullmatch(name):
        raise UsageError(f"--study {quote(name)}: expected a name of letters, digits and . _ + - (at most 64, "
                         "not starting with . _ + -)")
    all_prices, context_prices = tuning_inputs(tickers, data_dir, config, on_fetch, stop)
    for ticker, prices in all_prices.items():
        if cv_folds:
            cv_plan(prices, config, cv_folds, ticker, context_prices)  # too many folds is a usage error, named here
        else:
            windows.build_dataset(prices, config, context_prices=context_prices)  # too few rows: an error now
    folder = runs_dir / TUNE_DIR / name
    if storage is not None:
        store = StudyStore(url=storage)
        store.dialect()  # not a URL, or a database in memory: a usage error now
    else:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ForecastError(f"cannot make the study folder {folder}: {_reason(exc)}") from None
        store = local_store(folder, jobs)  # opened, checked and (for --jobs) moved only under the lock
    return TuneSetup(
        config=config, space=space, tickers=tuple(tickers), data_dir=data_dir, folder=folder, study=name,
        store=store, objective=objective, cv_folds=cv_folds,
        seed=config.train.seed if seed is None else seed,
        threads=threads or training_threads(threads_per_job(config, jobs, "local")),
    )


@contextlib.contextmanager
def study_lock(setup: TuneSetup) -> Iterator[None]:
    """A local study is searched by one `tune` process at a time (--jobs N shares it within that one). Taken
    before any of its files is opened: a second process is refused having read or changed nothing of it."""
    from filelock import FileLock, Timeout

    if not setup.store.local:
        yield
        return
    path = setup.folder / LOCK_FILE
    # FileLock truncates what it opens: never through a planted link, never a device or a directory.
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise ForecastError(f"study lock {path} is not a regular file (a link, a directory or a device?); move it "
                            "away and run tune again")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ForecastError(f"study {setup.study!r} is being searched by another tune process ({setup.folder}); "
                            "wait for it to finish, or search faster in one process with --jobs N") from None
    except OSError as exc:
        raise ForecastError(f"cannot lock study {setup.study!r} ({path}): {_reason(exc)}") from None
    try:
        yield
    finally:
        lock.release()


def quiet_optuna() -> Any:
    """optuna, with its logging off: its per-trial lines (and a failed trial's traceback) are ours to show."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def sampler_seed(seed: int, index: int, history: int) -> int:
    """The TPE sampler's seed for worker `index` of a search that starts with `history` trials in its study.
    A sampler seeded alike restarts its sequence, so a resumed study seeded with `seed` alone would propose its
    first trials' values again; the history moves it on. It seeds both of the sampler's generators: the random
    startup trials' (its RandomSampler) and TPE's own. Same seed, worker and history: the same points."""
    return int(np.random.SeedSequence([seed % 2**32, index, history]).generate_state(1)[0])


def open_study(setup: TuneSetup, index: int = 0, history: int | None = None) -> Any:
    """Create or resume the study, with worker `index`'s sampler for a search that began with `history` trials in
    the study (None: as many as it holds now); refuse one made for another space, tickers, objective or base
    config."""
    optuna = quiet_optuna()
    import sqlalchemy.exc

    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_WARMUP_EPOCHS)
    try:
        storage = setup.store.open()
        try:  # loaded first: Optuna's journal appends a line on every create_study, even of a study it holds
            study = optuna.load_study(study_name=setup.study, storage=storage, pruner=pruner)
        except KeyError:
            study = optuna.create_study(study_name=setup.study, storage=storage, direction="minimize",
                                        load_if_exists=True, pruner=pruner)
    except (sqlalchemy.exc.SQLAlchemyError, *STORAGE_DAMAGE) as exc:
        if not setup.store.local:
            raise ForecastError(f"cannot open study {setup.study!r} in {quote(setup.store.describe(), 80)}: "
                                f"{_reason(exc)}") from None
        raise ForecastError(f"damaged study file {setup.store.describe()}: Optuna cannot read it "
                            f"({_reason(exc)}){AFRESH}") from None
    if history is None:
        history = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(setup.seed, index, history), constant_liar=True)
    identity = setup.identity()
    recorded = study.user_attrs.get("identity")
    if recorded is None:
        study.set_user_attr("identity", identity)
        study.set_user_attr("space", setup.space.to_plain())
    elif recorded != identity:
        differs = [key for key in identity if recorded.get(key) != identity[key]]
        if "space_digest" in differs:  # the base config is hashed with the space's keys fixed: compared alone
            differs = [key for key in differs if key != "config_hash"]
        where = (f"delete {setup.folder} to start it afresh" if setup.store.local
                 else f"delete it with `optuna delete-study --study-name {setup.study} --storage URL`")
        named = " and ".join(_DIFFERENCES[key] for key in differs)
        raise UsageError(f"study {setup.study!r} was created with a different {named}; start a new "
                         f"study with --study NEW_NAME, or {where}")
    return study


_DIFFERENCES = {"space_digest": "search space", "tickers": "set of tickers", "objective": "--objective",
                "cv_folds": "--cv-folds", "config_hash": "base config (--config, --set)"}


def fail_abandoned(study: Any) -> int:
    """Mark the RUNNING trials of a local study failed (`abandoned`): under its lock, no process runs them."""
    from optuna.trial import TrialState

    abandoned = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in abandoned:
        study._storage.set_trial_user_attr(trial._trial_id, "abandoned", True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(abandoned)


def counted(trials: list[Any]) -> list[Any]:
    """The trials a search has run to an end: complete, pruned, or failed by their own training (diverged);
    not those abandoned by a dead process nor the one in flight at Ctrl-C."""
    return [trial for trial in trials if _state(trial) in ("complete", "pruned", "failed")]


def _state(trial: Any) -> str:
    state = trial.state.name.lower()
    if state == "fail":
        attrs = trial.user_attrs
        return "failed" if "error" in attrs else "interrupted" if attrs.get("interrupted") else "abandoned"
    return state


# --- one trial --------------------------------------------------------------------------------------


def validation_ratios(
    config: Config, prices: dict[str, pd.DataFrame], cv_folds: int = 0,
    on_epoch: Callable[[int, Any], bool] | None = None, stop: StopRequest | None = None,
    context_prices: dict[str, pd.DataFrame] | None = None,
) -> dict[str, float]:
    """The objective's figures for `config`: the RMSE ratio to naive on prices of the validation windows, day 1
    (`h1`) and all days (`all`); over several tickers the pooled ratio; with `cv_folds`, the mean over the
    folds. `on_epoch(unit, record)` hears every epoch of training unit `unit` (ticker × fold × member, in order); by
    returning True it ends the trial (`Pruned`). A seed ensemble (train.seeds) is trained and scored as `train`
    trains it, its members' forecasts averaged; each member is a unit of its own."""
    by_fold: dict[int, list[scoring.PeriodForecasts]] = {}
    unit, labels = 0, member_labels(config)
    for ticker, frame in prices.items():
        for fold, (dataset, scored) in enumerate(scored_periods(frame, config, cv_folds, ticker, context_prices)):
            ended: list[int] = []

            def report(label: str, record: Any, unit: int = unit, ended: list[int] = ended) -> bool:
                # Once pruned, every later member ends after its first epoch too.
                if ended or (on_epoch is not None and on_epoch(unit + labels.index(label), record)):
                    ended.append(record.epoch)
                    return True
                return False

            members, results = train_members(dataset, config, report, stop)
            if any(result.interrupted for result in results) or (stop is not None and stop.is_set()):
                raise Interrupted("interrupted during a trial")
            if ended:
                raise Pruned(f"pruned at epoch {ended[0]}")
            by_fold.setdefault(fold, []).append(scoring.period_forecasts(ensemble_of(members), scored, dataset))
            unit += len(labels)
    ratios: dict[str, list[float]] = {"h1": [], "all": []}
    for forecasts in by_fold.values():
        if len(forecasts) == 1:
            scores = scoring.score_forecasts(forecasts[0], config.model.type)["metrics"]["model"]
            for step in ratios:
                ratios[step].append(scores[step]["rmse_ratio"])
        else:
            pooled = pooled_ratio(forecasts)
            for step in ratios:
                ratios[step].append(pooled[f"rmse_ratio_{step}"])
    return {step: float(np.mean(values)) for step, values in ratios.items()}


def scored_periods(
    prices: pd.DataFrame, config: Config, cv_folds: int, ticker: str = "",
    context_prices: dict[str, pd.DataFrame] | None = None,
) -> Iterator[tuple[windows.Dataset, windows.Windows]]:
    """The datasets a trial trains on and the windows it scores: the validation windows, or each cv fold's
    block. Built one at a time, as they are reached."""
    if not cv_folds:
        dataset = windows.build_dataset(prices, config, context_prices=context_prices)
        yield dataset, dataset.val
        return
    for fold in cv_plan(prices, config, cv_folds, ticker, context_prices):
        dataset = backtest.fold_dataset(prices, config, fold, context_prices)  # prices cut off at the fold's end
        yield dataset, dataset.test  # the fold's block: days before the run's test period


def cv_plan(
    prices: pd.DataFrame, config: Config, folds: int, ticker: str = "",
    context_prices: dict[str, pd.DataFrame] | None = None,
) -> list[backtest.Fold]:
    """K consecutive blocks of the validation period's length that end where the test period starts; each fold
    trains on the days before its block (its early-stopping tail the run's validation share of them)."""
    dataset = windows.build_dataset(prices, config, context_prices=context_prices)
    days = pd.DatetimeIndex(prices.index[1:])
    val_start, test_start = days.get_loc(dataset.val_start), days.get_loc(dataset.test_start)
    block = test_start - val_start
    first = test_start - folds * block
    share = block / test_start
    needed = config.window.lookback + config.window.horizon
    if first - round(first * share) < needed:
        most = max(0, int((test_start - needed / (1 - share)) // block))
        raise UsageError(f"--cv-folds {folds}: {ticker or 'the series'} has {test_start} days before its test "
                         f"period, too few for {folds} blocks of {block} validation days after at least {needed} "
                         f"training days; use at most --cv-folds {most}")
    return backtest.plan_folds(first - round(first * share), first, test_start, folds, config.window.horizon)


def run_trial(
    trial: Any, setup: TuneSetup, prices: dict[str, pd.DataFrame], context_prices: dict[str, pd.DataFrame],
    stop: StopRequest,
) -> float:
    """Optuna's objective: sample, train, score the validation windows (see the top)."""
    import optuna

    if stop.is_set():
        trial.set_user_attr("interrupted", True)
        raise Interrupted("interrupted before the trial started")
    started = time.perf_counter()
    values = setup.space.sample(trial)
    epochs = [0]

    def on_epoch(unit: int, record: Any) -> bool:
        epochs[0] += 1
        if not math.isfinite(record.val_loss):
            return False  # a diverging epoch: the trainer stops it, and reports it
        # Each training unit (ticker × fold) has its own slot of steps, so trials compare like with like.
        trial.report(record.val_loss, unit * setup.config.train.epochs + record.epoch - 1)  # steps count from 0
        return trial.should_prune()

    def finish(**attrs: Any) -> None:
        for key, value in {"seconds": round(time.perf_counter() - started, 3), "epochs": epochs[0], **attrs}.items():
            trial.set_user_attr(key, value)

    try:
        config = setup.trial_config(values, f"trial {trial.number}")
        ratios = validation_ratios(config, prices, setup.cv_folds, on_epoch, stop, context_prices)
    except Pruned as exc:
        finish()
        raise optuna.TrialPruned(str(exc)) from None
    except Interrupted:
        finish(interrupted=True)
        raise
    except ForecastError as exc:  # diverged, too few rows for this lookback, …: the search goes on
        finish(error=" ".join(str(exc).split()))
        raise TrialFailed(str(exc)) from None
    if not all(math.isfinite(value) for value in ratios.values()):
        finish(error="the validation ratio is not a finite number")
        raise TrialFailed("not finite")
    finish(val_ratio_h1=ratios["h1"], val_ratio_all=ratios["all"])
    return ratios[setup.objective]


def tuning_inputs(
    tickers: Sequence[str], data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Each ticker's prices, cut to its context's common range as training cuts them, and the context series'
    prices (shared by every ticker; none without data.context)."""
    context_prices = context.load_context(data_dir, [entry.ticker for entry in config.data.context], on_fetch, stop)
    spec = windows.WindowSpec.from_config(config)
    prices = {ticker: context.common_range(load_training_prices(ticker, data_dir, config, on_fetch, stop), spec,
                                           context_prices)[0] for ticker in tickers}
    return prices, context_prices


def run_trials(
    setup: TuneSetup, index: int, n_trials: int | None, timeout: float | None, target: int | None,
    stop: StopRequest, on_trial: Callable[[Any], None] | None = None, study: Any = None,
) -> bool:
    """Worker `index` runs trials of the study until `n_trials` of its own, `timeout` seconds, the study's
    `target` of counted trials (other workers', other machines' included) or `stop`; True if stopped.
    `study`: the study already open in this process (else it is opened here, with worker `index`'s sampler)."""
    study = study or open_study(setup, index)
    prices, context_prices = tuning_inputs(setup.tickers, setup.data_dir, setup.config)

    def after_trial(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(trial)
        if stop.is_set() or (target is not None and len(counted(study.get_trials(deepcopy=False))) >= target):
            study.stop()

    try:
        study.optimize(lambda trial: run_trial(trial, setup, prices, context_prices, stop), n_trials=n_trials,
                       timeout=timeout, catch=(TrialFailed,), callbacks=[after_trial])
    except Interrupted:
        return True
    return stop.is_set()


# --- the search: in this process, or in N worker processes sharing the study ---------------------------

@dataclass
class SearchResult:
    trials: list[Any]  # every trial of the study (FrozenTrial), this run's and earlier ones
    run_here: int  # trials counted in this run
    abandoned: int  # RUNNING trials of a dead process, marked failed at start
    interrupted: bool


def search(
    setup: TuneSetup, trials: int | None, timeout: float | None, jobs: int = 1, stop: StopRequest | None = None,
    on_update: Callable[[list[Any]], None] | None = None,
) -> SearchResult:
    """Run the study up to `trials` counted trials in all (a resumed study runs what is missing) or for
    `timeout` seconds, in this process (`jobs` 1) or in `jobs` worker processes sharing its storage.
    `on_update` hears the study's trials after each trial (and, with workers, every POLL_S)."""
    stop = stop or _NeverStop()
    study = open_study(setup)
    history = len(study.get_trials(deepcopy=False))  # what every worker's sampler is seeded with (open_study)
    abandoned = fail_abandoned(study) if setup.store.local else 0
    before = len(counted(study.get_trials(deepcopy=False)))
    remaining = None if trials is None else max(0, trials - before)

    def update() -> None:
        if on_update is not None:
            on_update(study.get_trials(deepcopy=False))

    update()
    interrupted = False
    if remaining != 0 and not stop.is_set():
        if jobs == 1:
            interrupted = run_trials(setup, 0, remaining, timeout, trials, stop, lambda trial: update(), study)
        else:
            interrupted = _search_in_pool(setup, remaining, timeout, trials, jobs, stop, update, history)
    if setup.store.local:
        fail_abandoned(study)  # a worker killed mid-trial left it RUNNING
    final = study.get_trials(deepcopy=False)
    update()
    return SearchResult(final, len(counted(final)) - before, abandoned, interrupted or stop.is_set())


def _search_in_pool(setup: TuneSetup, remaining: int | None, timeout: float | None, target: int | None,
                    jobs: int, stop: StopRequest, update: Callable[[], None], history: int) -> bool:
    """`run_trials` in worker processes (executors.py starts them), one share of the remaining trials each,
    their samplers seeded with the `history` the search began with; `update` polled while they run. True if
    stopped."""
    workers = jobs if remaining is None else min(jobs, remaining)
    shares = [None] * workers if remaining is None else [remaining // workers + (i < remaining % workers)
                                                          for i in range(workers)]
    waiting = deque(PlainJob(run_worker, (setup, index, history, share, timeout, target), setup.threads)
                    for index, share in enumerate(shares))
    interrupted = False
    # A trial in flight at a stop request stops after its current batch and is not counted. Closed on the way
    # out, so a dead worker's error leaves no pool behind.
    with contextlib.closing(run_in_workers(waiting, workers, stop, POLL_S, update)) as finished_workers:
        for finished in finished_workers:
            if finished.died:
                raise ForecastError("a tune worker process died (killed, or out of memory); the finished "
                                    "trials are kept: run the same command again to resume")
            interrupted = finished.value or interrupted
    return interrupted


def run_worker(setup: TuneSetup, index: int, history: int, n_trials: int | None, timeout: float | None,
               target: int | None, stop: StopRequest) -> bool:
    """Worker `index` of --jobs N: `run_trials` with its sampler seeded by the history the search began with (as
    the parent saw it), not by whatever the study holds when this process gets to it."""
    return run_trials(setup, index, n_trials, timeout, target, stop, study=open_study(setup, index, history))


class _NeverStop:
    def is_set(self) -> bool:
        return False


# --- the files ----------------------------------------------------------------------------------------


def trial_rows(keys: list[str], trials: list[Any]) -> list[dict[str, Any]]:
    """One plain row per trial: number, state, value, the values it tried (a list choice as its label `a+b`),
    epochs, seconds, error."""
    rows = []
    for trial in trials:
        attrs = trial.user_attrs
        rows.append({
            # A pruned trial's value is its last validation loss, in scaled units: not an objective value.
            "number": trial.number, "state": _state(trial),
            "value": _finite(trial.value) if _state(trial) == "complete" else None,
            "val_ratio_h1": _finite(attrs.get("val_ratio_h1")), "val_ratio_all": _finite(attrs.get("val_ratio_all")),
            **{key: trial.params.get(key) for key in keys},
            "epochs": attrs.get("epochs"), "seconds": attrs.get("seconds"), "error": attrs.get("error"),
        })
    return rows


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def best_trial(trials: list[Any]) -> Any | None:
    """The complete trial of lowest value (the earliest of equals), or None."""
    complete = [trial for trial in trials if _state(trial) == "complete" and _finite(trial.value) is not None]
    return min(complete, key=lambda trial: (trial.value, trial.number)) if complete else None


def write_results(setup: TuneSetup, trials: list[Any], best: Any | None) -> dict[str, str]:
    """trials.csv, best.yaml (when a trial completed) and tune.png in the study folder; their paths."""
    setup.folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(setup.space.keys, trials)
    columns = ["number", "state", "value", "val_ratio_h1", "val_ratio_all", *setup.space.keys, "epochs", "seconds",
               "error"]
    frame = pd.DataFrame(rows, columns=columns)
    files = {"trials_csv": setup.folder / TRIALS_FILE}
    atomic_write_text(files["trials_csv"], frame.to_csv(index=False, lineterminator="\n"))
    if best is not None:
        files["best_yaml"] = setup.folder / BEST_FILE
        atomic_write_text(files["best_yaml"], best_yaml(setup, best, len(counted(trials))))
    files["tune_png"] = plots.tune_plot(
        [row["number"] for row in rows], [row["value"] for row in rows], [row["state"] for row in rows],
        importances(setup, trials), f"study {setup.study} · {', '.join(setup.tickers)} · validation RMSE / naive, "
        f"{OBJECTIVES[setup.objective]}", setup.folder / PLOT_FILE)
    return {name: str(path) for name, path in files.items()}


def best_config(setup: TuneSetup, best: Any) -> Config:
    return with_values(setup.config, setup.space.values_of(best.params), f"trial {best.number}")


def best_yaml(setup: TuneSetup, best: Any, trials: int) -> str:
    """The base config plus the best trial's values, as a config file `train --config` reads."""
    head = (f"# Best of {trials} trials of study {setup.study} (trial {best.number}): validation RMSE / naive "
            f"{best.value:.4f}, {OBJECTIVES[setup.objective]}, on {', '.join(setup.tickers)}.\n"
            f"# Chosen on validation: only a test score says how good it is (tune prints it).\n"
            f"# Searched: {', '.join(setup.space.keys)}; everything else is the base config.\n"
            f"# lstm-forecast train -t {setup.tickers[0]} --config {BEST_FILE}\n")
    return head + yaml.safe_dump(best_config(setup, best).to_plain(), sort_keys=False)


def importances(setup: TuneSetup, trials: list[Any]) -> dict[str, float] | None:
    """Optuna's parameter importances (PED-ANOVA: deterministic, no scikit-learn) from the complete trials;
    None for fewer than two or when every complete trial tried the same values."""
    optuna = quiet_optuna()
    complete = [trial for trial in trials if _state(trial) == "complete"]
    if len(complete) < 2:
        return None
    study = optuna.create_study(direction="minimize")  # in memory: the evaluator takes a study
    study.add_trials(complete)
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError):  # e.g. no parameter varied
        return None


# --- once, the honest number ---------------------------------------------------------------------


@dataclass
class TuneOutcome:
    report: dict[str, Any]
    interrupted: bool
    files: dict[str, str] = field(default_factory=dict)


def retrain_best(
    setup: TuneSetup, best: Any, runs_dir: Path, stop: StopRequest | None = None,
    on_retrain: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The best config trained again (same seed and threads) on each ticker, a normal run bundle each, and
    scored on the test period beside naive; with several tickers also the pooled test ratio. A ticker's run
    already trained with exactly this config on exactly today's rows (`reusable_run`) is reused, not trained
    again: it would be the same bundle (a finished study run again, or a resumed one whose best did not change).
    `on_retrain` hears which, ticker by ticker."""
    config = setup.trial_config(setup.space.values_of(best.params), f"trial {best.number}")
    runs, tests = [], []
    all_prices, context_prices = tuning_inputs(setup.tickers, setup.data_dir, config)
    for ticker, prices in all_prices.items():
        dataset = windows.build_dataset({ticker: prices}, config, context_prices=context_prices)
        reused = reused_run(config, ticker, dataset, runs_dir)
        if reused is not None:
            run, test = reused
            if on_retrain is not None:
                on_retrain(f"Reused run {run['run_dir']}: {ticker} was trained with the best config (trial "
                           f"{best.number}) on today's cached prices already; not training it again")
        else:
            if on_retrain is not None:
                on_retrain(f"Retraining the best config (trial {best.number}) on {ticker} and scoring it on the test "
                           "period…")
            outcome = train_run(config, ticker, prices, runs_dir, stop=stop, context_prices=context_prices)
            run = {"ticker": ticker, "run_dir": str(outcome.run_dir), "interrupted": outcome.result.interrupted,
                   "val": outcome.metrics["val"], "test": outcome.metrics["test"], "reused": False}
            test = outcome.test
        runs.append(run)
        tests.append(test)
        if stop is not None and stop.is_set():
            break
    shared = {"kind": config.model.type, "horizon": config.window.horizon,
              "reused": all(run["reused"] for run in runs)}
    if len(runs) == 1:
        ratio = runs[0]["test"]["metrics"]["model"][setup.objective]["rmse_ratio"]
        return {"runs": runs, "pooled": None, "test_ratio": ratio, **shared}
    pooled = pooled_ratio(tests)
    return {"runs": runs, "pooled": pooled, "test_ratio": pooled[f"rmse_ratio_{setup.objective}"], **shared}


def reusable_run(config: Config, ticker: str, dataset: windows.Dataset, runs_dir: Path) -> Path | None:
    """The newest finished run of `ticker` trained with exactly this resolved config (bundle.json's
    `config_hash`) on exactly the rows and context rows of `dataset` (its fingerprints): training again would
    make the same bundle. None when there is none (the cache changed since, say, or that run was interrupted)."""
    expected = {"config_hash": config_hash(config), "rows": prices_sha256(dataset.prices[ticker]),
                "context": [prices_sha256(rows) for rows in dataset.context_rows.values()], "interrupted": False}
    for run_dir in reversed(list_runs(runs_dir, ticker)):
        head = checked_record(run_dir / BUNDLE_FILE, RunHead)[0]  # None: absent or damaged, not reused
        if head is None:
            continue
        recorded = {
            "config_hash": head.config_hash,
            "rows": head.fingerprint.sha256 if head.fingerprint is not None else None,
            "context": [item.sha256 for item in head.context_fingerprints or []],
            "interrupted": head.training.interrupted if isinstance(head.training, TrainingHead) else None,
        }
        if recorded == expected:
            return run_dir
    return None


def reused_run(
    config: Config, ticker: str, dataset: windows.Dataset, runs_dir: Path,
) -> tuple[dict[str, Any], scoring.PeriodForecasts] | None:
    """`retrain_best`'s entry for the reusable run of `ticker`, scored from its weights on `dataset` as
    training scored it, and its test forecasts (for the pooled ratio); None to train it: none, or one that does
    not load."""
    run_dir = reusable_run(config, ticker, dataset, runs_dir)
    if run_dir is None:
        return None
    try:
        bundle = load_run(run_dir)
    except ForecastError:
        return None
    val, test = (scoring.period_forecasts(bundle.model, period, dataset) for period in (dataset.val, dataset.test))
    kind = bundle.shape.kind
    return {"ticker": ticker, "run_dir": str(run_dir), "interrupted": False, "reused": True,
            "val": scoring.score_forecasts(val, kind), "test": scoring.score_forecasts(test, kind)}, test


def optimism_line(best_value: float, tried: int, test_ratio: float) -> str:
    return (f"best validation ratio {best_value:.4f} among {tried} trials; its test ratio {test_ratio:.4f}; "
            "chosen on validation, the test figure is the only unbiased one")


def tune(
    setup: TuneSetup, runs_dir: Path, trials: int | None = DEFAULT_TRIALS, timeout: float | None = None,
    jobs: int = 1, stop: StopRequest | None = None, on_update: Callable[[list[Any]], None] | None = None,
    on_retrain: Callable[[str], None] | None = None,
) -> TuneOutcome:
    """The whole command: search, write the files, retrain the best and score it on the test period (see the
    top). Interrupted: the files of the finished trials are written and the retrain skipped."""
    with study_lock(setup):
        ready_study(setup)
        started = time.perf_counter()
        result = search(setup, trials, timeout, jobs, stop, on_update)
        search_seconds = round(time.perf_counter() - started, 3)
        best = best_trial(result.trials)
        files = write_results(setup, result.trials, best)
        states = [_state(trial) for trial in result.trials]
        summary = {state: states.count(state) for state in ("complete", "pruned", "failed", "abandoned",
                                                              "interrupted", "running")}
        report: dict[str, Any] = {
            "study": setup.study, "storage": setup.store.describe(), "folder": str(setup.folder),
            "tickers": list(setup.tickers), "objective": setup.objective, "cv_folds": setup.cv_folds,
            "space": setup.space.to_plain(), "seed": setup.seed, "threads_per_trial": setup.threads,
            "trials": {"total": len(result.trials), "counted": len(counted(result.trials)),
                       "this_run": result.run_here, **summary},
            "search_seconds": search_seconds,  # this run's search, worker start-up included
            "trial_rows": trial_rows(setup.space.keys, result.trials), "files": files,
            "interrupted": result.interrupted,
            "best": None, "test": None, "optimism": None,
        }
        if best is not None:
            report["best"] = {"number": best.number, "value": best.value, "values": setup.space.values_of(best.params),
                "val_ratio_h1": best.user_attrs.get("val_ratio_h1"),
                "val_ratio_all": best.user_attrs.get("val_ratio_all")}
        if result.interrupted:
            return TuneOutcome(report, True, files)
        if best is None:
            errors = [trial.user_attrs["error"] for trial in result.trials if "error" in trial.user_attrs]
            reason = f"; the first error: {errors[0]}" if errors else ""
            raise ForecastError(f"no trial of study {setup.study!r} completed ({len(result.trials)} trials, see "
                                f"{files['trials_csv']}){reason}")
        test = retrain_best(setup, best, runs_dir, stop, on_retrain)
        tried = summary["complete"] + summary["pruned"]
        report["test"] = test
        report["optimism"] = optimism_line(best.value, tried, test["test_ratio"])
        interrupted = any(run["interrupted"] for run in test["runs"]) or (stop is not None and stop.is_set())
        report["interrupted"] = interrupted
        return TuneOutcome(report, interrupted, files)
