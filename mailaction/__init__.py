"""mailaction: mail-merge and letter-writing campaigns with a crash-safe delivery log."""

__version__ = "0.1.0"
