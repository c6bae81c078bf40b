"""Errors of the survey, model and results files, importable without loading Keras or the simulator
(the CLI catches them)."""

__all__ = ["ModelError", "ResultsError", "SurveyError"]


class ModelError(RuntimeError):
    """A model file is missing, corrupt, or made for another grid or other redshift bins."""


class ResultsError(RuntimeError):
    """A results folder is missing, unfinished or not of this format."""


class SurveyError(RuntimeError):
    """The survey cannot be made as asked (bad arguments or output folder)."""
