"""Project error hierarchy. Every error rebuy raises on purpose derives from `RebuyError`."""

from __future__ import annotations


class RebuyError(Exception):
    """Base class of all errors raised deliberately by rebuy."""


class SchemaError(RebuyError):
    """A table cannot be read at all or lacks a required column (fatal for the whole table)."""


class InvalidInputError(RebuyError):
    """An argument or a value passed by the caller is outside what the function accepts."""


class NotFittedError(RebuyError):
    """A model was asked to predict before `fit` was called."""
