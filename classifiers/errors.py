"""The classifiers package's errors: one base, so callers can catch everything it raises on purpose."""

from __future__ import annotations


class ClassifierError(Exception):
    """Base of every error the classifiers package raises on purpose."""


class TrainingDataError(ClassifierError, ValueError):
    """The rows given to train or evaluate a model cannot be used (too few, missing columns, one class)."""


class ModelFileError(ClassifierError):
    """A model file is missing, damaged, of another format or library version, or does not match its metadata."""
