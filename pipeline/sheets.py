"""Moved to :mod:`common.sheets`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from common import sheets as _moved

sys.modules[__name__] = _moved
