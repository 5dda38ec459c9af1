"""Moved to :mod:`hub.download`; the old import path is the same module object, and ``python -m pipeline.download``
still runs the download command."""
import sys

from hub import download as _moved

if __name__ == "__main__":
    sys.exit(_moved.main())
sys.modules[__name__] = _moved
