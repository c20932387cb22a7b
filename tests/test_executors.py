"""The worker pool of executors.py on its own: any plain job (a module-level function and picklable arguments)
runs in a spawned worker at its thread count, with Ctrl-C ignored there and the pool's stop event handed to
it; a stop request hands out nothing more; a tune worker that dies is tune's one-line error. Training in a pool,
a killed training worker and tune --jobs are tested with their commands (test_universe.py, test_tune.py)."""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from lstm_forecast import executors, tune
from lstm_forecast.errors import ForecastError


def seen_in_worker(label: str, stop: Any) -> dict[str, Any]:
    """A plain job: what its worker process looks like from inside."""
    import torch  # in the worker, after its threads are set, as a real job imports it

    return {"label": label, "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "mkl": os.environ.get("MKL_NUM_THREADS"),
            "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN, "stopped": stop.is_set()}


def test_a_plain_job_runs_in_a_spawned_worker_at_its_thread_count():
    waiting = deque(executors.PlainJob(seen_in_worker, (label,), 3) for label in ("a", "b"))
    polls: list[int] = []
    finished = list(executors.run_in_workers(waiting, 1, threading.Event(), on_poll=lambda: polls.append(1)))
    assert not waiting and [done.died for done in finished] == [False, False]
    seen = sorted((done.value for done in finished), key=lambda value: value["label"])
    assert [value["label"] for value in seen] == ["a", "b"] and polls
    for value in seen:
        assert value["pid"] != os.getpid() and value["torch_threads"] == 3 and value["omp"] == value["mkl"] == "3"
        assert value["sigint_ignored"] and value["stopped"] is False


def test_a_stop_request_hands_out_no_job():
    stop = threading.Event()
    stop.set()
    waiting = deque([executors.PlainJob(seen_in_worker, ("a",), 1)])
    assert list(executors.run_in_workers(waiting, 1, stop)) == [] and len(waiting) == 1


def die_at_once(*args: Any, stop: Any) -> None:
    """A plain job whose worker process is killed (as by the OOM killer) before it returns."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_tune_worker_that_dies_is_one_error_line(monkeypatch):
    monkeypatch.setattr(tune, "run_worker", die_at_once)  # what each tune worker runs
    setup = SimpleNamespace(threads=1)  # all the pool itself reads of a TuneSetup
    with pytest.raises(ForecastError, match=r"^a tune worker process died \(killed, or out of memory\); the "
                                            r"finished trials are kept: run the same command again to resume$"):
        tune._search_in_pool(setup, 1, None, 1, 1, threading.Event(), lambda: None, 0)
