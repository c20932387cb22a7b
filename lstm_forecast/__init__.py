"""lstm-forecast: honest LSTM stock-price forecasting from the command line."""

__version__ = "0.1.0"
