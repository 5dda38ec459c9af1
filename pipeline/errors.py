"""Moved to :mod:`common.errors`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from common import errors as _moved

sys.modules[__name__] = _moved
