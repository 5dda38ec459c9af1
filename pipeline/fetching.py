"""Moved to :mod:`hub.fetching`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from hub import fetching as _moved

sys.modules[__name__] = _moved
