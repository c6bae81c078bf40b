"""Errors of the model and results files, importable without loading Keras (the CLI catches them)."""

__all__ = ["ModelError", "ResultsError"]


class ModelError(RuntimeError):
    """A model file is missing, corrupt, or made for another grid or other redshift bins."""


class ResultsError(RuntimeError):
    """A results folder is missing, unfinished or not of this format."""
