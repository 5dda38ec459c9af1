"""Moved to :mod:`hub.download_hints`; the old import path is the same module object (monkeypatching either name works)."""
import sys

from hub import download_hints as _moved

sys.modules[__name__] = _moved
