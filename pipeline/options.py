"""Moved to :mod:`common.options`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from common import options as _moved

sys.modules[__name__] = _moved
