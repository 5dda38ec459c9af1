"""Moved to :mod:`common.atomic`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from common import atomic as _moved

sys.modules[__name__] = _moved
