"""pipeline.overlap: read-ahead and write-behind threads keep order, bound memory and pass errors on."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.overlap import BackgroundWorker, Prefetcher


def test_prefetcher_keeps_order_and_runs_the_source_in_another_thread():
    threads = []

    def source():
        for i in range(50):
            threads.append(threading.get_ident())
            yield i

    with Prefetcher(source(), depth=3) as items:
        assert list(items) == list(range(50))
        assert list(items) == []  # exhausted stays exhausted
    assert set(threads) and threading.get_ident() not in threads


def test_prefetcher_reads_at_most_depth_ahead():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    with Prefetcher(source(), depth=4) as items:
        assert next(items) == 0
        time.sleep(0.3)
        # one handed out, 4 queued, at most one more produced and waiting to be queued
        assert 5 <= len(produced) <= 6


def test_prefetcher_raises_the_sources_error_after_its_items():
    def source():
        yield 1
        yield 2
        raise ValueError("frame 2 is 10x10, expected 8x8")

    with Prefetcher(source(), depth=2) as items:
        assert next(items) == 1 and next(items) == 2
        with pytest.raises(ValueError, match="expected 8x8"):
            next(items)
        with pytest.raises(StopIteration):
            next(items)


def test_prefetcher_stops_and_closes_the_source_when_left_early():
    closed = threading.Event()

    def source():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    with Prefetcher(source(), depth=2) as items:
        for i in items:
            if i == 3:
                break
    assert closed.wait(1.0)


def test_prefetcher_rejects_a_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(iter([]), depth=0)


def test_background_worker_runs_calls_in_order_off_the_callers_thread():
    seen, threads = [], set()

    def record(i):
        threads.add(threading.get_ident())
        time.sleep(0.001)
        seen.append(i)

    with BackgroundWorker(depth=2) as worker:
        for i in range(40):
            worker.submit(record, i)
    assert seen == list(range(40))  # close() waited for all of them
    assert threading.get_ident() not in threads


def test_background_worker_reraises_the_first_error_and_skips_the_rest():
    ran = []

    def task(i):
        if i == 2:
            raise OSError("disk full")
        ran.append(i)

    worker = BackgroundWorker(depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            worker.submit(task, i)
            time.sleep(0.005)
    worker.close(discard=True)
    assert ran[:2] == [0, 1] and 2 not in ran and len(ran) < 100 and max(ran) < 10


def test_background_worker_error_surfaces_on_close():
    def boom():
        raise RuntimeError("encoder failed")

    worker = BackgroundWorker()
    worker.submit(boom)
    with pytest.raises(RuntimeError, match="encoder failed"):
        worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(print)


def test_background_worker_drops_pending_calls_when_the_block_fails():
    started, ran = threading.Event(), []

    def slow(i):
        started.set()
        time.sleep(0.2)
        ran.append(i)

    with pytest.raises(KeyError):
        with BackgroundWorker(depth=8) as worker:
            for i in range(5):
                worker.submit(slow, i)
            started.wait(1.0)
            raise KeyError("caller failed")
    assert ran == [0]  # the call in progress finished; the four waiting were dropped
