"""Moved to :mod:`hub.released`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from hub import released as _moved

sys.modules[__name__] = _moved
