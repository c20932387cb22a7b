"""The forecaster: a recurrent core reads the lookback window, a linear head writes the horizon.

Direct multi-step forecasting: the final hidden state of the top layer, a summary of the whole window,
goes through one linear layer to all `horizon` future values at once, so errors are not fed back
into later steps as they would be by predicting one step and rolling forward.

The core is PyTorch's fused `nn.LSTM` (or `nn.GRU`, `nn.RNN` for comparison); cell.py writes the LSTM
out gate by gate for reading. `ModelShape` holds everything needed to rebuild the module, so a run
bundle can load its weights without the config file. It also knows the model's tensors and a rough
memory estimate without allocating anything, so an oversized config or a bundle.json describing a
huge model is refused with a clear error instead of an out-of-memory kill.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lstm_forecast.config import Config, ModelConfig
from lstm_forecast.errors import UsageError

# nn.RNN uses its default tanh nonlinearity: bounded like the LSTM's and GRU's, so the three compare fairly.
RECURRENT_CORES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # hidden-sized pre-activations per step and layer
BYTES_PER_VALUE = 4  # float32 throughout
# Training keeps four copies of every parameter: the weights, their gradients and AdamW's two moments.
TRAINING_COPIES = 4
# Per step and layer, autograd keeps the gate pre-activations, the hidden and the cell state for the
# backward pass, and the backward pass needs as much again.
ACTIVATION_FACTOR = 2


@dataclass(frozen=True)
class ModelShape:
    """The model's architecture: enough to rebuild the module and load a state_dict into it.

    Unchecked: it comes from a validated config, or from bundle.json through `bundle.ShapeRecord`."""

    kind: str  # "lstm" | "gru" | "rnn"
    n_features: int
    hidden_size: int
    num_layers: int
    dropout: float
    horizon: int
    # A global model's learned ticker embedding: `ticker_embedding` numbers per ticker, for `n_tickers`
    # tickers, fed to the core beside the features at every step (0, 0: none, and every local model).
    ticker_embedding: int = 0
    n_tickers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name and shape of every tensor of the model's state_dict, built on the meta device (no memory)."""
        with torch.device("meta"):
            module = Forecaster(self)
        return {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}

    def parameter_count(self) -> int:
        return sum(math.prod(shape) for shape in self.tensor_shapes().values())

    def weight_bytes(self) -> int:
        """The size of the weights in memory (and, plus a small header, in model.safetensors)."""
        return self.parameter_count() * BYTES_PER_VALUE

    def training_bytes(self, batch_size: int, lookback: int) -> int:
        """A rough peak of training memory: parameter copies plus the activations of one batch."""
        steps = batch_size * lookback * self.num_layers
        activations = steps * self.hidden_size * (GATES[self.kind] + 2) * ACTIVATION_FACTOR * BYTES_PER_VALUE
        return self.weight_bytes() * TRAINING_COPIES + activations

    @classmethod
    def from_config(cls, model_config: ModelConfig, n_features: int, horizon: int, n_tickers: int = 0) -> ModelShape:
        """The shape a config describes; `n_tickers` sizes a global model's ticker embedding (local: 0)."""
        embedding = model_config.ticker_embedding if model_config.scope == "global" else 0
        return cls(
            kind=model_config.type,
            n_features=n_features,
            hidden_size=model_config.hidden_size,
            num_layers=model_config.num_layers,
            dropout=model_config.dropout,
            horizon=horizon,
            ticker_embedding=embedding,
            n_tickers=n_tickers if embedding else 0,
        )


# Where the physical memory cannot be read (Windows has no sysconf), a machine this size is assumed.
ASSUMED_MEMORY = 16 * 1024**3


def memory_limit() -> int:
    """The most memory one model may need: half of physical memory, or of the address-space limit when a
    smaller one is set (`ulimit -v`), leaving room for the libraries and the data."""
    try:
        import resource  # POSIX only

        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, AttributeError, ValueError, OSError):
        return ASSUMED_MEMORY // 2
    if soft != resource.RLIM_INFINITY:
        available = min(available, soft)
    return available // 2


def check_trainable(config: Config, kinds: Iterable[str] | None = None) -> None:
    """Refuse, before any data is read or memory allocated, a config whose model (of each of `kinds`,
    default `model.type`) could not be trained in this machine's memory; the message names the keys to lower."""
    from lstm_forecast.context import width

    limit = memory_limit()
    data = config.data
    n_inputs = len(data.features) + len(data.context) + width(tuple(data.calendar_features))
    for kind in kinds or [config.model.type]:
        model_config = config.model.model_copy(update={"type": kind})
        shape = ModelShape.from_config(model_config, n_features=n_inputs,
                                       horizon=config.window.horizon)
        needed = shape.training_bytes(config.train.batch_size, config.window.lookback)
        if needed > limit:
            raise UsageError(
                f"model.type {kind} with model.hidden_size {shape.hidden_size} and model.num_layers "
                f"{shape.num_layers} ({shape.parameter_count():,} parameters), train.batch_size "
                f"{config.train.batch_size} and window.lookback {config.window.lookback} needs about {gib(needed)} "
                "to train, more than the "
                f"{gib(limit)} allowed here (half the memory); lower model.hidden_size or model.num_layers "
                "(or train.batch_size, window.lookback)"
            )


def gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


class Forecaster(nn.Module):
    """(batch, lookback, n_features) -> (batch, horizon) forecasts in the scaled target's units.

    A global model's batches also carry each window's ticker index (batch,): with a ticker embedding it is
    looked up and appended to every step's features; without one it is ignored, so the model cannot tell
    tickers apart and forecasts a ticker it never saw as well as one it did.
    """

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.embedding = nn.Embedding(shape.n_tickers, shape.ticker_embedding) if shape.ticker_embedding else None
        # PyTorch applies recurrent dropout only between stacked layers, never after the top one;
        # with a single layer there is nothing to apply it to and it warns, so pass it only when stacked.
        self.core = RECURRENT_CORES[shape.kind](
            input_size=shape.n_features + shape.ticker_embedding,
            hidden_size=shape.hidden_size,
            num_layers=shape.num_layers,
            dropout=shape.dropout if shape.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(shape.hidden_size, shape.horizon)

    def forward(self, inputs: Tensor, ticker: Tensor | None = None) -> Tensor:
        # The core would also accept an unbatched 2-D input and return a differently shaped output.
        if inputs.ndim != 3 or inputs.shape[2] != self.shape.n_features:
            raise ValueError(
                f"Forecaster: expected inputs (batch, lookback, {self.shape.n_features}), "
                f"got {tuple(inputs.shape)}"
            )
        if self.embedding is not None:
            if ticker is None:
                raise ValueError("Forecaster: a model with a ticker embedding needs each window's ticker index")
            # The same vector at every step: the core reads the ticker beside the returns from the first day on.
            embedded = self.embedding(ticker)[:, None, :].expand(-1, inputs.shape[1], -1)
            inputs = torch.cat([inputs, embedded], dim=2)
        outputs, _ = self.core(inputs)  # (batch, lookback, hidden_size), the top layer at every step
        last_hidden = outputs[:, -1]  # equals the top layer's final hidden state h_n[-1]
        return self.head(last_hidden)


class Ensemble(nn.Module):
    """A seed ensemble: members of one shape, trained alike but for their seeds; its forecast is their mean (in
    the scaled target's units), so it stands wherever one model does: scoring, the backtest's first fold, predict."""

    def __init__(self, members: list[Forecaster]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.shape = members[0].shape

    def forward(self, inputs: Tensor, ticker: Tensor | None = None) -> Tensor:
        return torch.stack([member(inputs, ticker) for member in self.members]).mean(dim=0)


def members_of(model: Forecaster | Ensemble) -> list[Forecaster]:
    """An ensemble's members, or the one model."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def ensemble_of(members: list[Forecaster]) -> Forecaster | Ensemble:
    """One member as itself (a single model's bundle is as it always was), several as their mean."""
    return members[0] if len(members) == 1 else Ensemble(members)

