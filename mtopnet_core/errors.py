"""The project's error types, importable without loading Keras or the simulator.

Every failure that a user can cause and mend (a bad argument, an unusable folder, a damaged
file) raises a subclass of :class:`MtopnetError`, with one line naming the object and the
problem. The command line reports these (and the few file-system errors it expects) in one
line; anything else is a bug and keeps its traceback.
"""

__all__ = ["MtopnetError", "UsageError", "ModelError", "ResultsError", "SurveyError"]


class MtopnetError(Exception):
    """Base of the errors a user can cause and mend."""


class UsageError(MtopnetError, ValueError):
    """A request that cannot be honoured as asked: a bad setting or an output folder in the way."""


class ModelError(MtopnetError, RuntimeError):
    """A model file is missing, corrupt, or made for another grid or other redshift bins."""


class ResultsError(MtopnetError, RuntimeError):
    """A results folder is missing, unfinished or not of this format."""


class SurveyError(MtopnetError, RuntimeError):
    """The survey cannot be made as asked (bad arguments or output folder)."""
