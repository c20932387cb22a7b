"""The LSTM written out, one gate at a time: for understanding and for checking `nn.LSTM`.

An LSTM carries two memories from one time step to the next:

- the long-term memory, or cell state `c`, a running record that changes only by what is forgotten
  and what is added; because it is updated by multiplying and adding, not squashed at every step,
  information (and gradient) can travel across many steps;
- the short-term memory, or hidden state `h`, what the cell shows to the outside at this step (and
  what the forecaster's head reads at the last step).

At each step four small layers look at the concatenation [h, x] of the previous short-term memory
and the new input:

- forget gate  f = σ(W_f [h, x] + b_f)   how much of the long-term memory to keep (0 drop, 1 keep);
- input gate   i = σ(W_i [h, x] + b_i)   how much of the candidate to write into it;
- candidate    g = tanh(W_g [h, x] + b_g) what could be written, between -1 and 1;
- output gate  o = σ(W_o [h, x] + b_o)   how much of the long-term memory to show.

Then the new long-term memory is c' = f·c + i·g (keep some, add some), and the new short-term
memory is h' = o·tanh(c'). Both memories start at zero.

This is a readable reference with the same maths as PyTorch's fused kernel; training uses `nn.LSTM`
(see model.py). `LSTMLayer.from_torch_lstm` copies an `nn.LSTM`'s weights in, so the tests can show
that the two agree.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (batch, hidden_size)


class LSTMStep(NamedTuple):
    """Every intermediate value of one step, named as in the module docstring."""

    forget_preactivation: Tensor  # W_f [h, x] + b_f
    forget: Tensor  # f
    remembered: Tensor  # f·c, the part of the long-term memory kept
    input: Tensor  # i
    candidate: Tensor  # g
    output: Tensor  # o
    cell: Tensor  # c', the new long-term memory
    hidden: Tensor  # h', the new short-term memory


class LSTMCell(nn.Module):
    """One LSTM step with a weight matrix and a bias per gate, each acting on [h, x]."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        concat_size = hidden_size + input_size
        self.W_f = nn.Parameter(torch.empty(hidden_size, concat_size))
        self.W_i = nn.Parameter(torch.empty(hidden_size, concat_size))
        self.W_g = nn.Parameter(torch.empty(hidden_size, concat_size))
        self.W_o = nn.Parameter(torch.empty(hidden_size, concat_size))
        self.b_f = nn.Parameter(torch.empty(hidden_size))
        self.b_i = nn.Parameter(torch.empty(hidden_size))
        self.b_g = nn.Parameter(torch.empty(hidden_size))
        self.b_o = nn.Parameter(torch.empty(hidden_size))
        # The same uniform(-1/√hidden, 1/√hidden) start as nn.LSTM, so both begin alike.
        bound = 1.0 / math.sqrt(hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def zero_state(self, batch_size: int) -> LSTMState:
        """Both memories at zero, in this cell's dtype and device."""
        zeros = self.b_f.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros.clone()

    def step(self, x: Tensor, state: LSTMState | None = None) -> LSTMStep:
        """One step on x (batch, input_size), returning every gate value along the way."""
        h, c = self.zero_state(x.shape[0]) if state is None else state
        h_x = torch.cat([h, x], dim=1)
        forget_preactivation = h_x @ self.W_f.T + self.b_f
        forget = torch.sigmoid(forget_preactivation)
        input_gate = torch.sigmoid(h_x @ self.W_i.T + self.b_i)
        candidate = torch.tanh(h_x @ self.W_g.T + self.b_g)
        output_gate = torch.sigmoid(h_x @ self.W_o.T + self.b_o)
        remembered = forget * c
        new_c = remembered + input_gate * candidate
        new_h = output_gate * torch.tanh(new_c)
        return LSTMStep(
            forget_preactivation, forget, remembered, input_gate, candidate, output_gate, new_c, new_h
        )

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        """One step: x (batch, input_size) and (h, c) -> the new (h, c)."""
        values = self.step(x, state)
        return values.hidden, values.cell


class LSTMLayer(nn.Module):
    """An `LSTMCell` unrolled over a sequence (batch first, like the forecaster's `nn.LSTM`)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = LSTMCell(input_size, hidden_size)

    def forward(self, inputs: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """inputs (batch, seq, input_size) -> (outputs (batch, seq, hidden_size), final (h, c))."""
        if state is None:
            state = self.cell.zero_state(inputs.shape[0])
        outputs = []
        # A recurrence: step t needs the state from step t-1, so the loop over time is the point here.
        for t in range(inputs.shape[1]):
            state = self.cell(inputs[:, t], state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state

    @classmethod
    def from_torch_lstm(cls, lstm: nn.LSTM) -> LSTMLayer:
        """A reference layer holding the weights of a one-layer, one-direction `nn.LSTM`."""
        if lstm.num_layers != 1 or lstm.bidirectional or lstm.proj_size:
            raise ValueError("from_torch_lstm: expected a one-layer, unidirectional nn.LSTM, no projection")
        weight_ih = lstm.weight_ih_l0.detach()
        weight_hh = lstm.weight_hh_l0.detach()
        layer = cls(lstm.input_size, lstm.hidden_size).to(dtype=weight_ih.dtype, device=weight_ih.device)
        # PyTorch stacks the four gates in the order i, f, g, o, splits each gate's weight into the part
        # acting on x (weight_ih) and the part acting on h (weight_hh), and keeps two biases that add up.
        if lstm.bias:
            bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()
        else:
            bias = weight_ih.new_zeros(4 * lstm.hidden_size)
        weights = torch.cat([weight_hh, weight_ih], dim=1)  # columns match [h, x]
        cell = layer.cell
        with torch.no_grad():
            for gate, weight_part, bias_part in zip("ifgo", weights.chunk(4), bias.chunk(4), strict=True):
                getattr(cell, f"W_{gate}").copy_(weight_part)
                getattr(cell, f"b_{gate}").copy_(bias_part)
        return layer
