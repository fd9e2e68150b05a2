"""lstmkit's version: its own module, which imports nothing, so any layer can read it."""

__version__ = "0.1.0"
