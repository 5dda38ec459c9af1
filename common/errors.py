"""User errors of the pipeline layer, and what the command-line tools report as one line.

Every error that is the user's to fix derives from :class:`model.errors.UserError`. The classes here
also derive from the built-in class they replaced (``ValueError``, ``RuntimeError``,
``FileNotFoundError``), so ``except ValueError`` in callers keeps working.

:data:`USER_ERRORS` is ``(UserError, OSError)``: an ``OSError`` that reaches a command-line tool is a
file the user named that cannot be read or written (missing, a folder, permission denied, disk full),
and Python's message already names the path, so it is reported in one line too. Anything else is a bug
and keeps its traceback.
"""
from __future__ import annotations

from model.errors import UserError

__all__ = ["USER_ERRORS", "DeviceError", "InputError", "MissingFileError", "NoFaceError", "OptionError", "UserError"]


class OptionError(UserError, ValueError):
    """An option (command-line flag or API argument) is out of its range or conflicts with another."""


class InputError(UserError, ValueError):
    """An input file exists but cannot be used (not an image, a damaged image, parsing maps of the wrong shape)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs does not exist; the message says how to get it."""


class DeviceError(UserError, RuntimeError):
    """The requested device is not available."""


#: What the command-line tools print as one line (``error: ...``, exit status 1).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)


class NoFaceError(UserError, ValueError):
    """No face was found where one is needed."""
