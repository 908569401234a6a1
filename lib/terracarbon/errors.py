"""Exception hierarchy.

Every error raised on purpose by terracarbon derives from :class:`TerracarbonError`, so a
notebook or ``run_all.py`` can tell a user mistake (bad parameter, bad file) from a bug.
Messages name the parameter or file, what was received, what was expected and the fix.
"""

from __future__ import annotations


class TerracarbonError(Exception):
    """Base class of all deliberate terracarbon errors."""


class ParameterError(TerracarbonError, ValueError):
    """A parameter (YAML key, function argument) is missing, unknown, mistyped or out of range."""


class InputDataError(TerracarbonError, ValueError):
    """An input file or table is missing, unreadable or lacks what the study needs."""


class GridMismatchError(InputDataError):
    """Rasters or points cannot be put on the target grid (no overlap, bad CRS, bad shape)."""


class StageError(TerracarbonError, RuntimeError):
    """A pipeline stage failed or an upstream stage's artifacts are missing or stale."""


class ModelError(TerracarbonError, ValueError):
    """A model cannot be trained or applied with the data given (too few plots, missing features)."""


class RunInterrupted(StageError):
    """The user interrupted a run (Ctrl-C, SIGTERM); what completed is kept, a rerun resumes."""
