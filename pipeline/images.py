"""Moved to :mod:`common.images`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from common import images as _moved

sys.modules[__name__] = _moved
