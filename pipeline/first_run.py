"""Moved to :mod:`hub.first_run`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from hub import first_run as _moved

sys.modules[__name__] = _moved
