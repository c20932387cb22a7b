"""`python -m lstm_forecast` runs the command-line tool."""

from lstm_forecast.cli import main

main()
