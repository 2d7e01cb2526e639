"""Exceptions with one-line messages that name the file, line, field or tensor at fault."""


class RewardkitError(Exception):
    """Base class: the CLI prints these as a single ``error: ...`` line and exits non-zero."""


class DataError(RewardkitError, ValueError):
    """Malformed preference data (names file:line and field)."""


class ModelError(RewardkitError, ValueError):
    """A model directory or checkpoint that cannot be used as asked."""
