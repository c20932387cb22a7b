"""What each command does and prints, one module per command, each with the one `run` its cli.py command calls.

cli.py parses the options (and loads the config); the command's module chooses between its forms (one ticker,
a universe, a global model), does the work through the domain modules, prints the report on stdout, progress
and warnings on stderr, and raises the error that sets the exit code. These modules import torch and pandas
at import time: cli.py imports them inside its commands only, so that `--help` stays fast.
"""
