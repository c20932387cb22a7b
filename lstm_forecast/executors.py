"""Running jobs in this process, in local worker processes, or as Ray tasks.

The one place that starts worker processes: any plain job (a `PlainJob`: a module-level function, picklable
arguments and its torch thread count) runs in spawned workers through `run_in_workers`: a ticker's training,
a tune worker. Each worker sets its torch thread count before torch is imported there, so N jobs × threads
never oversubscribe the cores; it ignores Ctrl-C and hears the parent's stop request through the pool's
shared stop event, which every job is handed. A worker that dies (SIGKILL, out of memory) breaks the pool:
the jobs running in it are reported, and the caller decides what becomes of them.

Training jobs are `train.train_ticker` on one ticker, with plain arguments (a `Job`) and a plain result (a
`JobOutcome`), so the three executors differ only in where the job runs:

  * `run_here`: one after another in this process (`--jobs 1`): no start-up cost, an epoch bar per job.
  * `run_in_pool`: N worker processes (`--jobs N`) through `run_in_workers`. A job whose worker died is tried
    once more in a fresh pool, then failed; the others go on.
  * `run_on_ray`: Ray tasks (`--executor ray`) on a cluster (`--ray-address`, joined with the token Ray's
    token authentication reads; `join_ray_cluster`) or on a local instance started for the command; Ray retries
    a task whose worker died.

A failing job (too short, broken file, diverged) is a `JobOutcome` with its one-line error, never an exception:
one ticker never stops the others. A stop request (the CLI's Ctrl-C) stops handing out jobs; running jobs stop
after their current batch and save their best epoch, as a single `train` does (a Ray task looks at the
driver's stop flag once a second; one still queued ends before it trains).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_forecast.config import Config
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError, quote

POLL_S = 0.2  # how often a waiting parent looks at its stop request
POOL_ATTEMPTS = 2  # a job whose worker process died is tried once more in a fresh pool
RAY_RETRIES = 1  # the same for a Ray task whose worker died
RAY_STOP_POLL_S = 1.0  # how often a Ray task asks the driver's stop flag
RAY_CONNECT_TIMEOUT_S = 5  # a cluster's head answers at once; a silent one is down or firewalled
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0"  # a client's preface, then its empty SETTINGS
HTTP2_SETTINGS_FRAME = 4  # the frame type a gRPC server answers the preface with
RAY_TOKEN_HELP = ("set RAY_AUTH_TOKEN to the head's token (`ray get-auth-token` on the head prints it), "
                  "RAY_AUTH_TOKEN_PATH to a file holding it, or copy it to ~/.ray/auth_token")


@dataclass(frozen=True)
class Job:
    """One ticker's training job: plain data that pickles to any process or machine."""

    config: Config
    ticker: str
    data_dir: Path
    runs_dir: Path
    # torch's CPU threads for this job: a count (recorded in its bundle); in this process also `auto` or a
    # recorded schedule, which trainer.ThreadPlan follows
    threads: int | str | list[list[int]]


@dataclass(frozen=True)
class JobOutcome:
    """What became of a job: its `TickerResult`, or the one-line reason it failed."""

    ticker: str
    result: Any | None  # train.TickerResult (typed loosely: this module must not import torch)
    error: str | None
    seconds: float
    interrupted: bool = False  # stopped by the stop request (a result may still hold the best epoch)


def run_job(job: Job, on_epoch: Callable[[Any], Any] | None = None, stop: StopRequest | None = None) -> JobOutcome:
    """Run one job wherever this is called, turning every failure a user should see into its outcome."""
    from lstm_forecast.train import train_ticker  # here, not at the top: a worker sets its threads first

    started = time.perf_counter()
    try:
        check_visible(job)
        config = job.config.model_copy(
            update={"train": job.config.train.model_copy(update={"threads": job.threads})}
        )
        result = train_ticker(config, job.ticker, job.data_dir, job.runs_dir, on_epoch=on_epoch, stop=stop)
    except Interrupted as exc:
        return JobOutcome(job.ticker, None, str(exc), time.perf_counter() - started, interrupted=True)
    except (ForecastError, OSError, MemoryError, RecursionError, OverflowError) as exc:
        return JobOutcome(job.ticker, None, _one_line(exc), time.perf_counter() - started)
    return JobOutcome(job.ticker, result, None, time.perf_counter() - started, interrupted=result.interrupted)


def check_visible(job: Job) -> None:
    """A worker on another machine must see the same data and runs dirs (a shared path), or its bundle would
    land where nobody looks: say so instead of writing there."""
    for name, folder in (("data dir", job.data_dir), ("runs dir", job.runs_dir)):
        if not folder.is_dir():
            raise ForecastError(
                f"the {name} {folder} is not visible on {platform.node()}; on a cluster the data and runs "
                "dirs must be shared paths every worker can reach"
            )


def _one_line(exc: BaseException) -> str:
    message = str(exc) if isinstance(exc, ForecastError) else f"{type(exc).__name__}: {exc}"
    return " ".join(message.split())


# --- in this process ---------------------------------------------------------------------------


def run_here(
    jobs: list[Job], stop: StopRequest, on_epoch: Callable[[str, Any], Any] | None = None
) -> Iterator[JobOutcome]:
    """The jobs one after another in this process; `on_epoch(ticker, record)` hears every epoch."""
    for job in jobs:
        if stop.is_set():
            return

        def report(record: Any, ticker: str = job.ticker) -> Any:
            return on_epoch(ticker, record) if on_epoch is not None else None

        yield run_job(job, report, stop)


# --- local worker processes --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlainJob:
    """Any job a worker process can run: a module-level function (pickled by its name) and picklable
    arguments. The worker calls `function(*args, stop=<the pool's stop event>)` with torch at `threads`
    threads; the value it returns must pickle back."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    threads: int  # torch's CPU threads; the jobs of one pool share it (a worker's OpenMP reads it once)


@dataclass(frozen=True)
class Finished:
    """A job the pool is done with: the value its function returned, or `died` with no value."""

    job: PlainJob
    value: Any = None
    died: bool = False  # its worker process died (killed, out of memory), or the pool broke under it


_worker_stop: Any = None  # in a worker: the pool's shared stop event


def _start_worker(threads: int, stop_event: Any) -> None:
    """Runs first in every worker process, before torch is imported there (a job's function, and the module
    that holds it, are unpickled after this)."""
    global _worker_stop
    # OpenMP and MKL read these once, when torch loads them; set_num_threads covers torch's own pool.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    # Ctrl-C at a terminal reaches the whole process group: the parent decides, and tells us through the event.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_stop = stop_event


def _run_in_worker(job: PlainJob) -> Any:
    import torch

    torch.set_num_threads(job.threads)
    return job.function(*job.args, stop=_worker_stop)


def run_in_workers(
    waiting: deque[PlainJob], workers: int, stop: StopRequest, poll_s: float = POLL_S,
    on_poll: Callable[[], None] | None = None,
) -> Iterator[Finished]:
    """The `waiting` jobs in `workers` spawned processes, taken from its left as workers free up and yielded
    as they finish (not in order); `on_poll` is called every `poll_s` while they run. A stop request stops
    handing out jobs and reaches the running ones through the pool's stop event. A worker that dies breaks
    the pool: every job running in it is yielded `died` and this ends, the jobs not handed out left in
    `waiting` (for a fresh pool, if the caller wants one)."""
    if not waiting:
        return
    context = multiprocessing.get_context("spawn")  # fork would copy this process's threads and locks
    stop_event = context.Event()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(waiting[0].threads, stop_event))
    running: dict[Future, PlainJob] = {}
    try:
        while (waiting and not stop.is_set()) or running:
            while waiting and len(running) < workers and not stop.is_set():
                job = waiting.popleft()
                running[pool.submit(_run_in_worker, job)] = job
            if stop.is_set():
                stop_event.set()  # running jobs stop after their current batch
            finished, _ = wait(running, timeout=poll_s, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                job = running.pop(future)
                try:
                    value = future.result()
                except BrokenProcessPool:
                    broken = True
                    yield Finished(job, died=True)
                else:
                    yield Finished(job, value)
            if broken:  # the pool is gone: every job in it ends the same way
                for job in running.values():
                    yield Finished(job, died=True)
                return
            if on_poll is not None:
                on_poll()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_in_pool(jobs: list[Job], workers: int, stop: StopRequest) -> Iterator[JobOutcome]:
    """The training jobs in `workers` spawned processes, yielded as they finish (not in order)."""
    waiting = deque(PlainJob(run_job, (job,), job.threads) for job in jobs)
    deaths: dict[str, int] = {}
    while waiting:
        died: list[PlainJob] = []
        for finished in run_in_workers(waiting, workers, stop):
            if finished.died:
                died.append(finished.job)
            else:
                yield finished.value
        for plain in died:
            job: Job = plain.args[0]  # run_job's one argument
            deaths[job.ticker] = deaths.get(job.ticker, 0) + 1
            if deaths[job.ticker] < POOL_ATTEMPTS and not stop.is_set():
                waiting.appendleft(plain)
            else:
                yield JobOutcome(job.ticker, None, "its worker process died (killed, or out of memory)", 0.0)
        if stop.is_set():
            return


# --- Ray -----------------------------------------------------------------------------------------


def check_reachable(address: str) -> None:
    """A `host:port` (or `ray://host:port`) cluster address must accept a connection and answer the opening
    of a gRPC (HTTP/2) conversation within seconds, as a Ray head does; "auto" and other forms are left to Ray.
    Ray itself would retry a silent or foreign port for half a minute, logging a line a second."""
    if not _is_host_port(address):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S) as connection:
            connection.sendall(HTTP2_PREFACE)
            answer = connection.recv(9)  # a frame header; a gRPC server opens with its SETTINGS frame
    except TimeoutError:
        answer = b""
    except (OSError, ValueError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ForecastError(
            f"cannot reach the Ray cluster at {quote(address)}: {reason}; check --ray-address (or RAY_ADDRESS), "
            "or leave it out for a local Ray instance"
        ) from None
    if len(answer) < 9 or answer[3] != HTTP2_SETTINGS_FRAME:
        raise ForecastError(
            f"{quote(address)} accepts connections but does not answer as a Ray cluster within "
            f"{RAY_CONNECT_TIMEOUT_S} s; give the head's port (`ray start --head --port P`, 6379 by default)"
        )


def _is_host_port(address: str) -> bool:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return bool(host) and port.isdigit()


def join_ray_cluster(ray: Any, address: str) -> ExitStack:
    """`ray.init` on the cluster at `address`, with the token Ray's token authentication reads (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) when one is found; a cluster that cannot be joined is one line,
    within seconds. Ray sends a token only in its token mode, which it turns on by itself for a cluster it
    starts but never for an explicit address: without this a token cluster would refuse us for half a minute.
    Close the returned stack after `ray.shutdown()`: it ends the token mode (every call to the cluster needs it)."""
    check_reachable(address)
    with ExitStack() as connection:
        token_sent = connection.enter_context(_token_mode_if_found())
        if _is_host_port(address) and not address.startswith("ray://"):  # a Ray Client server has no GCS to ask
            _check_token(address, token_sent)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            raise ForecastError(f"cannot join the Ray cluster at {quote(address)}: {_one_line(exc)[:200]}") from None
        return connection.pop_all()


@contextmanager
def _token_mode_if_found() -> Iterator[bool]:
    """Ray's token mode for this process while in the block, when RAY_AUTH_MODE is unset and a token is found;
    the mode (an environment variable Ray caches) is put back after, so nothing outlives the connection.
    Yields whether a token is sent."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray from before token authentication (pyproject allows ray>=2.9): nothing to send
        yield False
        return

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # looked up anew: the variables may have changed since Ray last looked
    try:
        found = loader.has_token(ignore_auth_mode=True)
    except AuthenticationError:  # RAY_AUTH_TOKEN_PATH names a file that cannot be read, or an empty one
        path = os.environ.get("RAY_AUTH_TOKEN_PATH", "")
        raise ForecastError(f"RAY_AUTH_TOKEN_PATH {quote(path)} cannot be read or is empty: {RAY_TOKEN_HELP}") \
            from None
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() == "token" and not found:  # Ray's C++ client would abort the process
        raise ForecastError(f"RAY_AUTH_MODE is token but no Ray token was found: {RAY_TOKEN_HELP}")
    if mode is not None or not found:
        yield found and mode is not None and mode.lower() == "token"
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray reads its settings once; this makes it read RAY_AUTH_MODE again
    try:
        yield True
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        Config.initialize("")
        loader.reset_cache()


def _check_token(address: str, token_sent: bool) -> None:
    """Ask the cluster's head for its id, as `ray.init` does first, but once and quietly: a head that wants a
    token we do not have (or another one) says so at once, where `ray.init` would retry for half a minute."""
    try:
        from ray._raylet import InnerGcsClient
        from ray.exceptions import AuthenticationError, RayError
    except ImportError:  # a Ray from before token authentication: ray.init's own error says what went wrong
        return

    try:
        with _native_stderr_silenced():  # Ray's C++ client logs every refusal straight to the stderr file
            InnerGcsClient.standalone(address, None, RAY_CONNECT_TIMEOUT_S * 1000)
    except AuthenticationError:
        problem = "refused this machine's token" if token_sent else "asks for a token and none was found"
        raise ForecastError(f"the Ray cluster at {quote(address)} {problem}: {RAY_TOKEN_HELP}") from None
    except RayError as exc:
        raise ForecastError(f"cannot join the Ray cluster at {quote(address)}: {_one_line(exc)[:200]}") from None


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null in the block (C++ logging writes there, past sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(quiet, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)


class StopFlag:
    """A Ray actor holding the driver's stop request, so tasks anywhere on the cluster can see it."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


class _RemoteStop:
    """A task's view of the `StopFlag`: asked at most once a second (a round trip per batch would cost more
    than the batch), and set for good once seen."""

    def __init__(self, flag: Any) -> None:
        self.flag, self.seen, self.next_look = flag, False, 0.0

    def is_set(self) -> bool:
        import ray

        if not self.seen and time.monotonic() >= self.next_look:
            self.seen = ray.get(self.flag.is_set.remote())
            self.next_look = time.monotonic() + RAY_STOP_POLL_S
        return self.seen


def _run_on_ray_worker(job: Job, flag: Any) -> JobOutcome:
    import torch

    torch.set_num_threads(job.threads)
    return run_job(job, stop=_RemoteStop(flag))


def run_on_ray(jobs: list[Job], address: str | None, stop: StopRequest) -> Iterator[JobOutcome]:
    """The jobs as Ray tasks of `threads` CPUs each, yielded as they finish; a local Ray instance is started
    (and shut down) when there is no `address` (or RAY_ADDRESS) to join. Ray is joined here, before the first
    outcome is asked for, so a caller learns that it cannot be (a `UsageError` or `ForecastError`) before it
    writes anything."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray: pip install 'lstm-forecast[ray]' (or pip install 'ray>=2.9')"
        ) from None
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    connection = ExitStack()
    if started_here and address is not None:
        connection = join_ray_cluster(ray, address)
    elif started_here:
        try:
            # "local": a new instance of our own, never a cluster some `ray start` left on this machine, which
            # Ray would otherwise join (its /tmp/ray/ray_current_cluster) without a --ray-address given.
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     num_cpus=os.cpu_count() or 1)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ForecastError(f"cannot start a local Ray instance: {_one_line(exc)[:200]}") from None
    return _ray_outcomes(ray, jobs, stop, shutdown=started_here, connection=connection)


def _ray_outcomes(
    ray: Any, jobs: list[Job], stop: StopRequest, shutdown: bool, connection: ExitStack
) -> Iterator[JobOutcome]:
    try:
        flag = ray.remote(num_cpus=0)(StopFlag).remote()
        task = ray.remote(num_cpus=jobs[0].threads if jobs else 1, max_retries=RAY_RETRIES)(_run_on_ray_worker)
        pending = {task.remote(job, flag): job for job in jobs}
        told = False
        while pending:
            if stop.is_set() and not told:
                ray.get(flag.set.remote())  # running tasks stop after a batch; queued ones end before training
                told = True
            finished, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for reference in finished:
                job = pending.pop(reference)
                try:
                    yield ray.get(reference)
                except ray.exceptions.RayError as exc:
                    yield JobOutcome(job.ticker, None, f"the Ray task failed: {_one_line(exc)[:300]}", 0.0)
    finally:
        if shutdown:
            ray.shutdown()
        connection.close()
