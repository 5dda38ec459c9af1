"""Runtime per frame and peak memory of a processing loop.

>>> monitor = RuntimeMonitor(device)                       # doctest: +SKIP
>>> with monitor:                                          # doctest: +SKIP
...     for frame in frames:
...         with monitor.frame():
...             process(frame)
>>> monitor.stats()                                        # doctest: +SKIP

* Time: wall-clock seconds of each ``frame()`` block (``time.perf_counter``); on CUDA the device is
  synchronised at both ends of the block, so asynchronous kernels are counted in their frame.
* Host memory: the peak resident set size of the process, which includes the loaded models. On Linux
  it is the kernel's high-water mark ``VmHWM`` (``/proc/self/status``), elsewhere ``ru_maxrss``.
  (``ru_maxrss`` is not reset by ``clear_refs``: it keeps the peak of the process image an ``exec``
  replaced, so a subprocess started from a large process reports its parent's size.)
  On Linux the high-water mark is reset when the monitor is
  entered (by writing ``5`` to ``/proc/self/clear_refs``), so the peak is that of the monitored
  section; where that is impossible it is the peak since the process started (``peak_rss_reset`` is
  then ``False``).
* CUDA memory: ``torch.cuda.max_memory_allocated`` of the device, reset when the monitor is entered
  (``None`` on CPU).
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["RuntimeMonitor", "RuntimeStats", "peak_memory_gib", "peak_rss_bytes", "reset_peak_rss"]

_MIB = 1024.0 * 1024.0


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS mark (Linux only); ``True`` when it was reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes: ``VmHWM`` on Linux (the mark that
    :func:`reset_peak_rss` resets), else ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # "VmHWM:   123456 kB"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_memory_gib(device: torch.device | str = "cpu") -> float:
    """Peak CUDA allocation since its last reset (CUDA), or the process's peak RSS (otherwise), in GiB."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return peak_rss_bytes() / 2**30


@dataclass(frozen=True)
class RuntimeStats:
    """Timing and memory of a monitored loop (seconds and MiB)."""

    frames: int
    total_s: float
    seconds_per_frame: float  # mean over the frames
    median_seconds_per_frame: float
    peak_rss_mib: float
    peak_rss_reset: bool  # True: the peak is that of the monitored section; False: since the process started
    cuda_peak_mib: float | None


class RuntimeMonitor:
    """Times ``frame()`` blocks and records the peak memory of the ``with`` section (see the module docstring)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.times: list[float] = []
        self._reset = False
        self._peak_rss = 0
        self._cuda_peak: int | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> RuntimeMonitor:
        self.times = []
        self._reset = reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self._peak_rss = peak_rss_bytes()
        if self.device.type == "cuda":
            self._cuda_peak = torch.cuda.max_memory_allocated(self.device)

    @contextmanager
    def frame(self) -> Iterator[None]:
        """Time one frame's processing."""
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.times.append(time.perf_counter() - start)

    def stats(self) -> RuntimeStats:
        """The statistics of the finished ``with`` section."""
        if not self.times:
            raise RuntimeError("no frame was timed")
        return RuntimeStats(
            frames=len(self.times),
            total_s=float(sum(self.times)),
            seconds_per_frame=float(statistics.fmean(self.times)),
            median_seconds_per_frame=float(statistics.median(self.times)),
            peak_rss_mib=self._peak_rss / _MIB,
            peak_rss_reset=self._reset,
            cuda_peak_mib=None if self._cuda_peak is None else self._cuda_peak / _MIB,
        )
