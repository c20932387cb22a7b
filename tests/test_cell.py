"""The written-out LSTM against nn.LSTM and against a worked example by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lstm_forecast.cell import LSTMCell, LSTMLayer


def _torch_lstm(
    input_size: int, hidden_size: int, seed: int = 0, dtype: torch.dtype = torch.float64
) -> nn.LSTM:
    torch.manual_seed(seed)
    # float64 by default, so that a difference above 1e-6 can only be a real disagreement, not rounding.
    return nn.LSTM(input_size, hidden_size, batch_first=True).to(dtype)


# float32 too: the fused kernel and the written-out maths round differently, but by ~1e-7, well inside 1e-6.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_nn_lstm_from_zero_state(dtype: torch.dtype) -> None:
    lstm = _torch_lstm(input_size=3, hidden_size=5, dtype=dtype)
    layer = LSTMLayer.from_torch_lstm(lstm)
    inputs = torch.randn(4, 7, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))

    outputs, (h, c) = layer(inputs)
    expected_outputs, (expected_h, expected_c) = lstm(inputs)

    assert outputs.shape == (4, 7, 5) and outputs.dtype == dtype
    torch.testing.assert_close(outputs, expected_outputs, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, expected_h[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(c, expected_c[0], atol=1e-6, rtol=0)


def test_matches_nn_lstm_from_given_state() -> None:
    lstm = _torch_lstm(input_size=2, hidden_size=4, seed=3)
    layer = LSTMLayer.from_torch_lstm(lstm)
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(3, 6, 2, dtype=torch.float64, generator=generator)
    h0 = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    c0 = torch.randn(3, 4, dtype=torch.float64, generator=generator)

    outputs, (h, c) = layer(inputs, (h0, c0))
    expected_outputs, (expected_h, expected_c) = lstm(inputs, (h0[None], c0[None]))

    torch.testing.assert_close(outputs, expected_outputs, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, expected_h[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(c, expected_c[0], atol=1e-6, rtol=0)


def test_copies_nn_lstm_without_bias_as_zero_bias() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True, bias=False).double()
    layer = LSTMLayer.from_torch_lstm(lstm)
    inputs = torch.randn(2, 5, 2, dtype=torch.float64)

    torch.testing.assert_close(layer(inputs)[0], lstm(inputs)[0], atol=1e-6, rtol=0)
    assert torch.count_nonzero(layer.cell.b_f) == 0


@pytest.mark.parametrize(
    "lstm", [nn.LSTM(2, 3, num_layers=2), nn.LSTM(2, 3, bidirectional=True), nn.LSTM(2, 3, proj_size=2)]
)
def test_refuses_lstms_it_cannot_represent(lstm: nn.LSTM) -> None:
    with pytest.raises(ValueError, match="one-layer, unidirectional"):
        LSTMLayer.from_torch_lstm(lstm)


def _worked_example_cell() -> LSTMCell:
    """One unit, weights ordered [short-term memory, input] as the cell concatenates [h, x]."""
    cell = LSTMCell(input_size=1, hidden_size=1).double()
    values = {
        "W_f": [2.70, 1.63], "b_f": 1.62,
        "W_i": [2.00, 1.65], "b_i": 0.62,
        "W_g": [1.41, 0.94], "b_g": -0.32,
        "W_o": [4.38, -0.19], "b_o": 0.59,
    }  # fmt: skip
    with torch.no_grad():
        for name, value in values.items():
            parameter = getattr(cell, name)
            parameter.copy_(torch.tensor(value, dtype=torch.float64).reshape_as(parameter))
    return cell


def test_worked_example_by_hand() -> None:
    cell = _worked_example_cell()
    short_term = torch.tensor([[1.0]], dtype=torch.float64)
    long_term = torch.tensor([[2.0]], dtype=torch.float64)
    x = torch.tensor([[1.0]], dtype=torch.float64)

    step = cell.step(x, (short_term, long_term))

    assert step.forget_preactivation.item() == pytest.approx(5.95, abs=1e-9)  # 2.70 + 1.63 + 1.62
    assert step.forget.item() == pytest.approx(0.997, abs=5e-4)
    assert step.remembered.item() == pytest.approx(1.99, abs=5e-3)
    assert step.candidate.item() == pytest.approx(0.97, abs=5e-3)
    assert step.cell.item() == pytest.approx(2.95, abs=0.01)
    assert step.hidden.item() == pytest.approx(0.99, abs=0.01)
    # forward returns the same new memories as step, in the order (h, c).
    h, c = cell(x, (short_term, long_term))
    assert (h.item(), c.item()) == (step.hidden.item(), step.cell.item())


def test_states_start_at_zero() -> None:
    torch.manual_seed(0)
    layer = LSTMLayer(input_size=3, hidden_size=4)
    inputs = torch.randn(2, 5, 3)
    zeros = (torch.zeros(2, 4), torch.zeros(2, 4))

    outputs, (h, c) = layer(inputs)
    explicit_outputs, (explicit_h, explicit_c) = layer(inputs, zeros)

    torch.testing.assert_close(outputs, explicit_outputs, atol=0, rtol=0)
    torch.testing.assert_close(h, explicit_h, atol=0, rtol=0)
    torch.testing.assert_close(c, explicit_c, atol=0, rtol=0)
    # And a nonzero start does change the result, so the comparison above has teeth.
    assert not torch.allclose(layer(inputs, (torch.ones(2, 4), torch.ones(2, 4)))[0], outputs)


def test_layer_outputs_are_the_hidden_state_at_each_step() -> None:
    torch.manual_seed(0)
    layer = LSTMLayer(input_size=2, hidden_size=3)
    inputs = torch.randn(2, 4, 2)

    outputs, (h, _) = layer(inputs)

    torch.testing.assert_close(outputs[:, -1], h, atol=0, rtol=0)
    first_h, _ = layer.cell(inputs[:, 0])
    torch.testing.assert_close(outputs[:, 0], first_h, atol=0, rtol=0)
