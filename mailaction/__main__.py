"""`python -m mailaction` runs the command line."""

from .cli import main

main()
