"""The base class of every error that is the user's to fix (a bad file, a bad option, no face ...).

The command-line tools print such an error as one line (``error: ...``, exit status 1); any other
exception is a bug of ours and keeps its traceback. Each layer subclasses :class:`UserError` for its
own errors (checkpoints, style codes, media, faces, downloads, training set-up).
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error caused by the user's input or environment; its message says what to do."""
