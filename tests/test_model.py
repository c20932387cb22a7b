"""The forecaster's shapes, its rebuildable shape record, and dropout only where it belongs."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from lstm_forecast import model
from lstm_forecast.bundle import ShapeRecord, record_fields
from lstm_forecast.config import ModelConfig, load_config
from lstm_forecast.errors import UsageError
from lstm_forecast.model import Forecaster, ModelShape, check_trainable

SMALL_SHAPE = {
    "kind": "lstm",
    "n_features": 3,
    "hidden_size": 8,
    "num_layers": 2,
    "dropout": 0.2,
    "horizon": 5,
}


def _shape(**changes: object) -> ModelShape:
    return ModelShape(**(SMALL_SHAPE | changes))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_shape(kind: str, num_layers: int) -> None:
    torch.manual_seed(0)
    model = Forecaster(_shape(kind=kind, num_layers=num_layers))

    forecasts = model(torch.randn(4, 10, 3))

    assert forecasts.shape == (4, 5)
    assert isinstance(model.core, {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind])
    assert model.core.num_layers == num_layers


def test_rnn_core_uses_tanh() -> None:
    assert Forecaster(_shape(kind="rnn")).core.nonlinearity == "tanh"


def test_head_reads_the_top_layers_final_hidden_state() -> None:
    torch.manual_seed(0)
    model = Forecaster(_shape(num_layers=2)).eval()
    inputs = torch.randn(3, 6, 3)

    _, (h_n, _) = model.core(inputs)

    torch.testing.assert_close(model(inputs), model.head(h_n[-1]), atol=0, rtol=0)


def test_dropout_only_between_stacked_layers() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nn.LSTM warns if given dropout with one layer
        single = Forecaster(_shape(num_layers=1, dropout=0.3))
    stacked = Forecaster(_shape(num_layers=2, dropout=0.3))

    assert single.core.dropout == 0.0
    assert stacked.core.dropout == 0.3
    assert single.shape.dropout == 0.3  # the record keeps what was configured


def test_eval_mode_is_deterministic_and_train_mode_drops_out() -> None:
    torch.manual_seed(0)
    model = Forecaster(_shape(num_layers=2, dropout=0.5))
    inputs = torch.randn(8, 12, 3)

    model.train()
    assert not torch.equal(model(inputs), model(inputs))  # dropout is active while training
    model.eval()
    torch.testing.assert_close(model(inputs), model(inputs), atol=0, rtol=0)


def test_shape_round_trips_through_its_bundle_record() -> None:
    shape = _shape(kind="gru", num_layers=3, dropout=0.1, horizon=7)

    assert ModelShape(**record_fields(ShapeRecord.model_validate(json.loads(json.dumps(shape.to_dict()))))) == shape
    assert shape.to_dict()["kind"] == "gru"


def test_shape_from_config() -> None:
    config = ModelConfig(type="rnn", hidden_size=16, num_layers=1, dropout=0.0)

    shape = ModelShape.from_config(config, n_features=2, horizon=4)

    assert shape == ModelShape(kind="rnn", n_features=2, hidden_size=16, num_layers=1, dropout=0.0, horizon=4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "transformer"}, "kind\n  Input should be 'lstm', 'gru' or 'rnn'"),
        ({"hidden_size": "64"}, "hidden_size\n  Input should be a valid integer"),
        ({"num_layers": True}, "num_layers\n  a boolean is not a number"),
        ({"horizon": 0}, "horizon\n  Input should be greater than or equal to 1"),
        ({"n_features": 2.0}, "n_features\n  Input should be a valid integer"),
        ({"dropout": 1.0}, "dropout\n  Input should be less than 1"),
        ({"dropout": "0.2"}, "dropout\n  Input should be a valid number"),
    ],
)
def test_shape_record_rejects_bad_values(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ShapeRecord.model_validate(_shape().to_dict() | change)


def test_shape_record_rejects_missing_and_unknown_keys() -> None:
    values = _shape().to_dict()
    del values["horizon"]
    values["bidirectional"] = True

    with pytest.raises(ValidationError) as caught:
        ShapeRecord.model_validate(values)
    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        (("horizon",), "missing"), (("bidirectional",), "extra_forbidden")]
    with pytest.raises(ValidationError, match="valid dictionary or instance of ShapeRecord"):
        ShapeRecord.model_validate([1, 2])


def test_rebuilt_model_with_loaded_weights_gives_identical_output() -> None:
    torch.manual_seed(0)
    original = Forecaster(_shape(kind="lstm", num_layers=2)).eval()
    torch.manual_seed(1)  # a different initialisation, so only the loaded weights can make them agree
    rebuilt = Forecaster(ModelShape(**original.shape.to_dict())).eval()
    inputs = torch.randn(5, 9, 3)
    assert not torch.equal(rebuilt(inputs), original(inputs))

    rebuilt.load_state_dict(original.state_dict())

    torch.testing.assert_close(rebuilt(inputs), original(inputs), atol=0, rtol=0)


@pytest.mark.parametrize("bad", [torch.randn(10, 3), torch.randn(2, 10, 4)])
def test_forward_rejects_wrong_input_shape(bad: torch.Tensor) -> None:
    model = Forecaster(_shape())

    with pytest.raises(ValueError, match=r"expected inputs \(batch, lookback, 3\)"):
        model(bad)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_tensor_shapes_and_count_match_the_real_module_without_building_it(kind: str) -> None:
    shape = _shape(kind=kind, num_layers=3)
    real = Forecaster(shape)

    assert shape.tensor_shapes() == {name: tuple(tensor.shape) for name, tensor in real.state_dict().items()}
    assert shape.parameter_count() == sum(parameter.numel() for parameter in real.parameters())
    assert shape.weight_bytes() == 4 * shape.parameter_count()


def test_training_memory_grows_with_batch_and_lookback() -> None:
    shape = _shape()
    assert shape.training_bytes(64, 60) > shape.training_bytes(32, 60) > shape.training_bytes(32, 30)
    assert shape.training_bytes(1, 1) > 4 * shape.weight_bytes()  # weights, gradients, two AdamW moments


def test_a_model_too_large_to_train_is_refused_naming_the_keys() -> None:
    huge = load_config(None, ["model.hidden_size=4096", "model.num_layers=16"])
    with pytest.raises(UsageError) as caught:
        check_trainable(huge)
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "2,080,935,941 parameters" in message
    assert "lower model.hidden_size or model.num_layers" in message
    check_trainable(load_config())  # the defaults fit anywhere


def test_compare_checks_every_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(None, ["model.type=rnn"])
    rnn = ModelShape.from_config(config.model, 1, 5).training_bytes(64, 60)
    monkeypatch.setattr(model, "memory_limit", lambda: rnn)  # the RNN just fits; the LSTM does not
    check_trainable(config)
    with pytest.raises(UsageError, match=r"model\.type lstm"):
        check_trainable(config, ["rnn", "lstm"])


def test_memory_limit_respects_an_address_space_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _: (2 * 1024**3, 2 * 1024**3))
    assert model.memory_limit() == 1024**3  # half of 2 GiB: this machine has more than that


def test_memory_limit_without_sysconf_assumes_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(model.os, "sysconf")  # as on Windows
    assert model.memory_limit() == model.ASSUMED_MEMORY // 2
