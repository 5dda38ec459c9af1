"""Overlap video decoding and encoding with inference: one thread reads ahead, one thread writes behind.

PyAV, OpenCV and dlib release the GIL in their native code, so decoding (and cropping) the next frames and
encoding the finished ones run while the model works on the current batch; on a GPU the device then never
waits for I/O. Both helpers keep strict order, bound their queues (memory stays flat on long videos),
re-raise a worker's exception in the caller's thread with its original type, and stop their thread when
the caller leaves early (an error, a ``break``).

>>> with Prefetcher(iter(range(3)), depth=2) as items:
...     list(items)
[0, 1, 2]
"""
from __future__ import annotations

import queue
import threading
from types import TracebackType
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class Prefetcher(Generic[T]):
    """Iterate ``source`` in a background thread, at most ``depth`` items ahead of the consumer.

    ``source`` is consumed only by the worker thread. An exception raised by ``source`` is raised again
    from ``__next__`` after the items produced before it. ``close()`` (or leaving the ``with`` block) stops
    the worker at its next item and closes ``source`` if it is a generator.
    """

    def __init__(self, source: Iterator[T], depth: int = 4, name: str = "vtoonify-read") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((True, item)):
                    break
            else:
                self._put((True, _DONE))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put((False, e))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        ok, item = self._queue.get()
        if not ok:
            self._finished = True
            raise item
        if item is _DONE:
            self._finished = True
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._finished = True
        self._thread.join()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class BackgroundWorker:
    """Run submitted calls one after another, in order, in one background thread.

    ``submit(fn, *args)`` blocks only while ``depth`` calls are already waiting. The first exception raised
    by a call is re-raised by the next ``submit`` or by ``close``; calls submitted after it are skipped.
    ``close()`` waits for every call; ``close(discard=True)`` (what leaving the ``with`` block on an
    exception does) drops the calls not started yet.
    """

    def __init__(self, depth: int = 8, name: str = "vtoonify-write") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._discard = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is _DONE:
                return
            if self._error is not None or self._discard.is_set():
                continue
            fn, args = task
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._discard.set()
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed BackgroundWorker")
        self._raise_error()
        self._queue.put((fn, args))

    def close(self, discard: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if discard:
            self._discard.set()
        self._queue.put(_DONE)
        self._thread.join()
        if not discard:
            self._raise_error()

    def __enter__(self) -> BackgroundWorker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(discard=exc_type is not None)
