"""`python -m mailaction` runs the command line."""

from .cli import run

run()
