"""Moved to :mod:`common.cli`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from common import cli as _moved

sys.modules[__name__] = _moved
