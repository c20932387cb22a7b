"""Trainer: it learns, beats the naive forecast on AR(1) returns, repeats bit for bit, stops early on the
best weights, stops cleanly when its caller asks, and trains with the configured CPU threads."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import handling, same_weights, signal_self

from lstm_forecast import trainer
from lstm_forecast.config import TrainConfig
from lstm_forecast.errors import ForecastError
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.trainer import (
    AUTO_MAX_THREADS,
    EpochRecord,
    Samples,
    fit,
    predict,
    resolve_device,
    seed_everything,
    training_threads,
)

LOOKBACK = 5


def build_model(seed: int = 0, hidden_size: int = 8, num_layers: int = 1, dropout: float = 0.0) -> Forecaster:
    seed_everything(seed)
    shape = ModelShape("lstm", n_features=1, hidden_size=hidden_size, num_layers=num_layers,
                       dropout=dropout, horizon=1)
    return Forecaster(shape)


def train_config(**changes: object) -> TrainConfig:
    values = {"epochs": 5, "batch_size": 32, "lr": 1e-2, "patience": 100, "device": "cpu", "threads": 1} | changes
    return TrainConfig(**values)


def windows(series: np.ndarray) -> Samples:
    """The last LOOKBACK values as inputs (windows, LOOKBACK, 1), the next value as target (windows, 1)."""
    view = np.lib.stride_tricks.sliding_window_view(series, LOOKBACK + 1)
    return Samples(view[:, :LOOKBACK, None].astype(np.float32), view[:, LOOKBACK:].astype(np.float32))


def ar1_splits(n: int = 3000, phi: float = 0.5, seed: int = 0):
    """AR(1) returns split chronologically 60/20/20 into train, val and held-out windows."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(n)
    returns = np.empty(n)
    returns[0] = noise[0]
    for t in range(1, n):  # the recursion itself is sequential; building the data is not a hot path
        returns[t] = phi * returns[t - 1] + noise[t]
    cut1, cut2 = int(n * 0.6), int(n * 0.8)
    return windows(returns[:cut1]), windows(returns[cut1:cut2]), windows(returns[cut2:])


def few_noisy_splits(noise: float, n_train: int = 40, n_val: int = 200, seed: int = 0):
    """Target = last input + noise, with few training windows: a wide model learns, then fits the noise."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((n_train + n_val, LOOKBACK, 1)).astype(np.float32)
    targets = (inputs[:, -1] + noise * rng.standard_normal((n_train + n_val, 1))).astype(np.float32)
    return Samples(inputs[:n_train], targets[:n_train]), Samples(inputs[n_train:], targets[n_train:])


def mse(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((predict(model, inputs) - targets) ** 2))


def test_loss_decreases_on_a_learnable_task():
    rng = np.random.default_rng(1)
    inputs = rng.standard_normal((400, LOOKBACK, 1)).astype(np.float32)
    targets = inputs.mean(axis=1)  # a smooth function of the window
    records: list[EpochRecord] = []

    result = fit(build_model(), Samples(inputs[:300], targets[:300]), Samples(inputs[300:], targets[300:]),
                 train_config(epochs=8), on_epoch=records.append)

    assert records == result.history
    assert [record.epoch for record in records] == list(range(1, 9))
    assert result.epochs_run == 8 and not result.stopped_early and not result.interrupted
    assert records[-1].train_loss < 0.2 * records[0].train_loss
    assert records[-1].val_loss < 0.2 * records[0].val_loss
    assert result.device == "cpu"


def test_beats_the_zero_return_forecast_on_ar1_returns():
    train, val, test = ar1_splits()
    model = build_model()

    result = fit(model, train, val, train_config(epochs=10, patience=5))

    zero_forecast_mse = float(np.mean(test.targets**2))  # about the variance, 1 / (1 - 0.5²) = 1.33
    model_mse = mse(model, test.inputs, test.targets)
    # The best possible MSE is the noise variance, 1: a quarter below the naive forecast.
    assert model_mse < 0.85 * zero_forecast_mse
    assert result.best_val_loss < 0.85 * float(np.mean(val.targets**2))


def test_same_seed_repeats_bit_for_bit_and_another_seed_differs():
    train, val, _ = ar1_splits(n=400)
    config = train_config(epochs=3, seed=7)

    def trained(seed: int, draw_randoms_before_fit: bool = False) -> Forecaster:
        model = build_model(seed=0, hidden_size=8, num_layers=2, dropout=0.3)  # dropout draws randoms too
        if draw_randoms_before_fit:
            torch.rand(10)  # fit re-seeds, so unrelated random draws in between change nothing
        fit(model, train, val, config.model_copy(update={"seed": seed}))
        return model

    first = trained(seed=7)
    assert same_weights(first, trained(seed=7, draw_randoms_before_fit=True))
    assert not same_weights(first, trained(seed=8))


def test_a_callback_returning_true_ends_training_after_that_epoch_keeping_the_best():
    train, val, _ = ar1_splits(n=400)
    seen: list[int] = []

    def prune_after_epoch_3(record: EpochRecord) -> bool:
        seen.append(record.epoch)
        return record.epoch == 3

    model = build_model()
    result = fit(model, train, val, train_config(epochs=20), on_epoch=prune_after_epoch_3)

    assert seen == [1, 2, 3] and result.epochs_run == 3
    assert result.stopped_early and not result.interrupted
    assert mse(model, val.inputs, val.targets) == pytest.approx(result.best_val_loss, rel=1e-5)


class WindowsPlusOffset(torch.nn.Module):
    """A model of two inputs: the windows and an integer index, as a global model's ticker index will be."""

    def __init__(self) -> None:
        super().__init__()
        self.core = build_model()
        self.offset = torch.nn.Embedding(2, 1)

    def forward(self, windows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.core(windows) + self.offset(index)


def test_samples_may_carry_several_inputs_in_one_batch():
    train, val, _ = ar1_splits(n=400)
    # Two interleaved "series": the second is shifted by +3, which only the index can tell.
    index = {name: np.arange(len(split.targets)) % 2 for name, split in (("train", train), ("val", val))}
    shifted = {name: split.targets + 3.0 * index[name][:, None] for name, split in (("train", train), ("val", val))}
    model = WindowsPlusOffset()

    result = fit(model, Samples((train.inputs, index["train"]), shifted["train"]),
                 Samples((val.inputs, index["val"]), shifted["val"]), train_config(epochs=30, lr=3e-2))

    forecasts = predict(model, (val.inputs, index["val"]), batch_size=7)
    assert forecasts.shape == shifted["val"].shape  # predict takes the same inputs as fit
    learned = model.offset.weight.detach().ravel()
    assert float(learned[1] - learned[0]) == pytest.approx(3.0, abs=0.3)
    assert result.best_val_loss < 1.3  # about the noise: the index explained the shift


def test_seed_everything_makes_initial_weights_repeat():
    assert same_weights(build_model(seed=3), build_model(seed=3))
    assert not same_weights(build_model(seed=3), build_model(seed=4))


def test_early_stopping_restores_the_best_epoch():
    train, val = few_noisy_splits(noise=0.7)
    model = build_model(hidden_size=32)

    result = fit(model, train, val, train_config(epochs=200, patience=3, batch_size=8))

    assert result.stopped_early and result.best_epoch > 1
    assert result.epochs_run == result.best_epoch + 3 < 200
    val_losses = [record.val_loss for record in result.history]
    assert result.best_val_loss == min(val_losses) == val_losses[result.best_epoch - 1]
    assert result.history[-1].val_loss > result.best_val_loss  # the last weights were worse...
    assert mse(model, val.inputs, val.targets) == pytest.approx(result.best_val_loss, rel=1e-5)  # ...and were replaced


def test_tiny_gradient_clip_still_trains_and_changes_the_steps():
    train, val, _ = ar1_splits(n=400)
    clipped, unclipped = build_model(), build_model()

    result = fit(clipped, train, val, train_config(epochs=4, grad_clip=1e-6))
    fit(unclipped, train, val, train_config(epochs=4, grad_clip=0))

    losses = [loss for record in result.history for loss in (record.train_loss, record.val_loss)]
    assert np.isfinite(losses).all()
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert not same_weights(clipped, unclipped)


def test_huber_loss_is_reported_and_plateau_lowers_the_learning_rate():
    train, val = few_noisy_splits(noise=3.0)  # errors beyond delta = 1 are common
    model = build_model(hidden_size=32)
    config = train_config(epochs=40, patience=6, batch_size=8, loss="huber", lr_schedule="plateau")

    result = fit(model, train, val, config)

    huber = F.huber_loss(torch.from_numpy(predict(model, val.inputs)), torch.from_numpy(val.targets), delta=1.0).item()
    assert huber == pytest.approx(result.best_val_loss, rel=1e-5)
    assert huber < 0.9 * mse(model, val.inputs, val.targets)  # so it really is Huber, not MSE
    learning_rates = [record.lr for record in result.history]
    assert learning_rates[0] == config.lr
    assert min(learning_rates) <= config.lr / 2


def test_a_stop_request_after_an_epoch_stops_with_the_best_weights():
    train, val, _ = ar1_splits(n=400)
    model = build_model()
    stop = threading.Event()

    def stop_after_epoch_2(record: EpochRecord) -> None:
        if record.epoch == 2:
            stop.set()

    result = fit(model, train, val, train_config(epochs=20), on_epoch=stop_after_epoch_2,
                 stop=stop)

    assert result.interrupted and not result.stopped_early
    assert result.epochs_run == 2
    assert mse(model, val.inputs, val.targets) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_a_stop_request_in_the_first_epoch_keeps_no_epoch():
    train, val, _ = ar1_splits(n=400)
    model = build_model()
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    forward_calls = 0
    stop = threading.Event()

    def stop_in_batch_3(module: torch.nn.Module, inputs: object, output: object) -> None:
        nonlocal forward_calls
        forward_calls += 1
        if forward_calls == 3:
            stop.set()

    model.register_forward_hook(stop_in_batch_3)
    result = fit(model, train, val, train_config(epochs=20, batch_size=16), stop=stop)

    assert result.interrupted
    assert result.epochs_run == 0 and result.history == [] and result.best_epoch == 0
    assert forward_calls == 3  # stopped right after the batch in which the request came, no validation pass
    assert not same_weights(initial, model)


def test_fit_leaves_signals_to_its_caller():
    """The trainer installs no handler: the caller's (here one that raises) is the one a SIGINT reaches."""
    train, val, _ = ar1_splits(n=400)

    class CallersHandlerRan(Exception):
        pass

    def callers_handler(signum: int, frame: object) -> None:
        raise CallersHandlerRan

    def press_ctrl_c(record: EpochRecord) -> None:
        signal_self(signal.SIGINT)

    with handling(signal.SIGINT, callers_handler):
        with pytest.raises(CallersHandlerRan):
            fit(build_model(), train, val, train_config(epochs=5), on_epoch=press_ctrl_c)
        assert signal.getsignal(signal.SIGINT) is callers_handler


def test_fit_runs_with_the_configured_threads_and_restores_the_count():
    train, val, _ = ar1_splits(n=400)
    seen: list[int] = []
    before = torch.get_num_threads()

    result = fit(build_model(), train, val, train_config(epochs=1, threads=2),
                 on_epoch=lambda record: seen.append(torch.get_num_threads()))

    assert seen == [2] and result.threads == 2 and result.summary()["threads"] == 2
    assert torch.get_num_threads() == before


def counters_of(*samples: tuple[int, int]):
    """A stand-in for /proc/stat's (all, idle) counters that returns `samples` in turn."""
    return iter(samples).__next__


def test_auto_threads_take_the_cores_other_processes_leave_free(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count()
    monkeypatch.setattr(trainer.time, "sleep", lambda seconds: None)
    # An idle machine: every jiffy of the sample idle.
    monkeypatch.setattr(trainer, "_cpu_counters", counters_of((0, 0), (1000, 1000)))
    assert trainer.free_cores(cores) == cores
    # Another process holds one core of the machine for the whole sample.
    monkeypatch.setattr(trainer, "_cpu_counters", counters_of((0, 0), (1000 * cores, 1000 * (cores - 1))))
    assert trainer.free_cores(cores) == cores - 1
    # A process using a fifth of a core leaves it free; one using half of it does not.
    monkeypatch.setattr(trainer, "_cpu_counters", counters_of((0, 0), (100 * cores, 100 * cores - 20)))
    assert trainer.free_cores(cores) == cores
    monkeypatch.setattr(trainer, "_cpu_counters", counters_of((0, 0), (100 * cores, 100 * cores - 50)))
    assert trainer.free_cores(cores) == cores - 1


@pytest.mark.parametrize(("content", "cores"), [("max 100000\n", None), ("200000 100000\n", 2),
                                               ("150000 100000\n", 2), ("50000 100000\n", 1), ("junk", None)])
def test_a_container_quota_caps_the_cores_auto_may_take(tmp_path, content, cores):
    quota = tmp_path / "cpu.max"
    quota.write_text(content)
    assert trainer.cpu_quota(str(quota)) == cores
    assert trainer.cpu_quota(str(tmp_path / "absent")) is None


def test_auto_threads_follow_omp_num_threads_when_the_user_set_it(monkeypatch):
    monkeypatch.setattr(trainer, "free_cores", lambda cores: pytest.fail("the machine need not be sampled"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert training_threads("auto") == 3
    assert training_threads(2) == 2  # train.threads set in the config wins


def test_auto_threads_fall_back_to_the_load_average_and_stay_in_range(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    def no_proc_stat():
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(trainer, "_cpu_counters", no_proc_stat)
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert trainer.free_cores(2) == 1
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # a crowded machine: still one
    assert training_threads("auto") == 1
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert training_threads("auto") == min(AUTO_MAX_THREADS, len(os.sched_getaffinity(0)))
    assert training_threads(3) == 3


def test_a_loss_that_is_never_finite_is_a_clear_error():
    train, val, _ = ar1_splits(n=400)
    with pytest.raises(ForecastError, match=r"training diverged.*epoch 1; lower the learning rate"):
        fit(build_model(), train, val, train_config(grad_clip=0).model_copy(update={"lr": 1e30}))


def test_empty_validation_split_is_a_clear_error():
    train, val, _ = ar1_splits(n=400)
    with pytest.raises(ForecastError, match="no validation windows"):
        fit(build_model(), train, Samples(val.inputs[:0], val.targets[:0]), train_config())


def test_predict_is_deterministic_and_independent_of_batch_size():
    train, _, _ = ar1_splits(n=400)
    model = build_model(num_layers=2, dropout=0.5)
    model.train()  # predict must switch dropout off itself

    whole = predict(model, train.inputs)
    assert whole.shape == (len(train.inputs), 1) and whole.dtype == np.float32
    np.testing.assert_allclose(predict(model, train.inputs.astype(np.float64), batch_size=7), whole, rtol=1e-5)
    assert np.array_equal(predict(model, train.inputs), whole)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_is_a_clear_error():
    with pytest.raises(ForecastError, match="'cuda' is not available"):
        resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="has a GPU")
def test_auto_device_falls_back_to_cpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


class FakeMachine:
    """Stands in for the CPU counters `auto` reads, looked at before every step: other processes keep `others`
    cores busy (this process's own CPU time is left out of what auto sees as load)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cores: int = 2) -> None:
        self.others = 0.0
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(trainer, "usable_cores", lambda: cores)
        monkeypatch.setattr(trainer, "free_cores", lambda available: available)  # idle when training starts
        monkeypatch.setattr(trainer, "RETHINK_S", 0.0)
        monkeypatch.setattr(trainer.CpuLook, "others_busy_since", lambda look, before: self.others)


def test_auto_threads_follow_a_process_that_starts_and_ends_mid_run(monkeypatch):
    machine = FakeMachine(monkeypatch)
    plan = trainer.ThreadPlan("auto")
    counts = []
    with trainer.cpu_threads(plan.first):
        for step in range(9):
            machine.others = 1.0 if 3 <= step < 6 else 0.0  # a CPU-bound process holds a core for three steps
            plan.before_step()
            counts.append(torch.get_num_threads())
    assert plan.first == 2
    assert counts == [2, 2, 2, 1, 1, 1, 2, 2, 2]
    assert plan.schedule == [(0, 2), (3, 1), (6, 2)]


def test_auto_threads_take_a_core_that_is_mostly_free_and_leave_one_that_is_not(monkeypatch):
    machine = FakeMachine(monkeypatch)
    plan = trainer.ThreadPlan("auto")
    with trainer.cpu_threads(plan.first):
        for others in (0.2, 0.5, 0.2, 1.6):
            machine.others = others
            plan.before_step()
    assert plan.schedule == [(0, 2), (1, 1), (2, 2), (3, 1)]  # a fifth of a core left free counts as free


def test_a_set_count_or_omp_num_threads_is_never_changed_by_load(monkeypatch):
    machine = FakeMachine(monkeypatch)
    machine.others = 1.0
    for plan in (trainer.ThreadPlan(2), (monkeypatch.setenv("OMP_NUM_THREADS", "2"), trainer.ThreadPlan("auto"))[1]):
        for _ in range(3):
            plan.before_step()
        assert plan.schedule == [(0, 2)]


def test_a_run_whose_threads_changed_records_them_and_repeats_bit_for_bit_from_the_record(monkeypatch):
    """The schedule auto took under a changing load, given back as train.threads, trains the same weights."""
    train, val, _ = ar1_splits(n=600)
    machine = FakeMachine(monkeypatch)
    looks = iter([0.0, 0.0, 1.0, 1.0, 1.0, 0.0] + [0.0] * 1000)
    monkeypatch.setattr(trainer.CpuLook, "others_busy_since", lambda look, before: next(looks))

    adaptive = build_model()
    first = fit(adaptive, train, val, train_config(epochs=2, threads="auto"))
    assert first.thread_schedule[0] == (0, 2) and (2, 1) in first.thread_schedule and len(first.thread_schedule) > 2
    recorded = first.summary()["thread_schedule"]
    assert recorded == [list(pair) for pair in first.thread_schedule]

    machine.others = 1.0  # a different load now: the replay does not look at it
    monkeypatch.setattr(trainer.CpuLook, "others_busy_since", lambda look, before: machine.others)
    replayed = build_model()
    again = fit(replayed, train, val, TrainConfig(**train_config(epochs=2).model_dump() | {"threads": recorded}))
    assert again.thread_schedule == first.thread_schedule  # replayed step for step, not re-decided under load
    assert same_weights(adaptive, replayed)


@pytest.mark.parametrize("schedule", [[], [[1, 2]], [[0, 2], [0, 1]], [[0, 0]], [[0, 2], [5, 300]], [[0, 2, 3]],
                                      [["0", 2]], [[0, True]], "[[0, 2]]"])
def test_a_thread_schedule_that_could_not_have_been_recorded_is_refused(schedule):
    with pytest.raises(ValueError, match="threads"):
        train_config(threads=schedule)
