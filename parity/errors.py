"""Every error `parity` raises on purpose.

ParityError
 +-- ParityInputError      bad texts, bad options, bad files: the user can fix the input
 +-- SpecError             an adapter spec on the command line is wrong (unknown name or key)
 +-- ModelNotFound         the model path does not exist or is not a model directory
 +-- AdapterUnavailable    an optional framework is not installed (message has the install step)
 |   +-- PluginError       (parity.adapters.registry) an adapter plugin does not import
 +-- AdapterError          a model cannot be loaded from the given path, or an adapter returned
 |                         output of the wrong shape or dtype
 +-- ComparisonError       two adapters' vectors cannot be compared (dimension, count)
 +-- BaselineError         a baseline directory is missing, damaged or does not match

Outside ParityError (a crash, not an input the user can fix: the CLI's exit 3 with error.log):

RuntimeError
 +-- AdapterCrash          a backend crashed loading or embedding; names the adapter, chains the cause
"""

from __future__ import annotations


class ParityError(Exception):
    """Base class: the CLI turns any of these into one line on stderr and exit 2."""


class ParityInputError(ParityError, ValueError):
    """Texts, options or files given to parity are not usable."""


class SpecError(ParityInputError):
    """An adapter spec names an unknown adapter or option."""


class ModelNotFound(ParityInputError):
    """The model path does not point to a model directory."""


class AdapterUnavailable(ParityError):
    """The framework behind an adapter is not installed."""


class AdapterError(ParityError):
    """A model could not be loaded from the given path, or the output is not a numeric (n, dim)
    array (NaN/Inf rows are findings, not errors)."""


class AdapterCrash(RuntimeError):
    """A backend's `_embed` raised, or its `_load` with an error that is not about the model
    files: a bug or a framework failure, never bad input. Not a
    ParityError, so the CLI reports it as an internal error (exit 3, traceback in error.log)."""


class ComparisonError(ParityError):
    """Two adapters' outputs cannot be compared."""


class BaselineError(ParityError):
    """A baseline is missing, damaged, or was made for other texts."""
