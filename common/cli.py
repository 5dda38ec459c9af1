"""How the command-line tools end: one line for what the user can fix, a traceback for our bugs.

:func:`run_cli` runs a tool's work and turns

* a user error (:data:`common.errors.USER_ERRORS`: :class:`model.errors.UserError` and ``OSError``)
  into ``error: <message>`` on stderr, exit status 1;
* Ctrl-C (SIGINT) into ``interrupted``, exit status 130;
* SIGTERM (what ``timeout``, ``docker stop``, systemd and Slurm send) into ``terminated``, exit status
  143: it is raised in the main thread as :class:`Terminated`, a ``KeyboardInterrupt``, so the same
  clean-up runs as for Ctrl-C (temporary files removed, nothing left under an output name).

A second signal while cleaning up is ignored, so the clean-up finishes. Any other exception propagates
with its traceback (Python's exit status 1).
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from common.errors import USER_ERRORS

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USER_ERROR", "Terminated", "run_cli", "signals_as_interrupts"]

T = TypeVar("T")

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise_once(exc_type: type[BaseException]) -> Callable:
    def handler(signum: int, frame: object) -> None:
        # Ignore both signals from now on: the clean-up that the exception triggers must not be cut short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise exc_type()

    return handler


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """In the block, SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, _raise_once(KeyboardInterrupt))
    signal.signal(signal.SIGTERM, _raise_once(Terminated))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def run_cli(work: Callable[[], T], report: Callable[[T], None] | None = None) -> int:
    """Run ``work()``, then ``report(result)``; returns the exit status (see the module doc)."""
    try:
        with signals_as_interrupts():
            result = work()
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    if report is not None:
        report(result)
    return 0
