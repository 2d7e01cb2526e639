"""The package version (its own module, below everything that records it in outputs)."""

__version__ = "0.3.0"
