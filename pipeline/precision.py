"""Whether this CPU computes bfloat16 natively, and the one-line tip that names the fastest measured way to run on
it (:func:`speed_tip`: ``--engine openvino --dtype bfloat16`` or ``--dtype bfloat16`` where bfloat16 is native).

On CPUs whose vector units have bfloat16 dot products (AVX-512 BF16, AMX) oneDNN runs bfloat16 convolutions
about twice as fast as float32 (x1.8-2.5 end to end, by CPU); elsewhere it emulates them and they are slower than
float32, so the tip is only shown where the hardware has them. ``--dtype bfloat16`` runs VToonify in mixed precision
(:meth:`model.vtoonify.VToonify.to_mixed_precision`): the big convolutions in bfloat16, the parts whose
rounding would show in float32. float32 stays the default: it reproduces the original implementation.

The figures below are measured by ``benchmarks/bf16_accuracy.py`` (table in ``benchmarks/README.md``).
PyTorch is imported only by the functions, so the command-line help can quote the figures cheaply.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch

__all__ = ["BF16_SPEEDUP", "BF16_PSNR_DB", "NATIVE_BF16_FLAGS", "cpu_flags", "cpu_model_name", "native_bf16",
           "fast_mode_available", "bf16_tip", "FAST_DTYPE", "FAST_TOGGLE_INFO", "MeasuredPath", "MEASURED_SPEEDUPS",
           "FAST_PATHS",
           "speed_tip"]

#: ``style_transfer.py --video --scale_image --cpu`` per frame, float32 time over ``--dtype bfloat16`` time, rounded
#: down: x1.76 (VToonify-D) and x1.94 (VToonify-T) on a 2-core AMD EPYC Zen 5 with AVX-512 BF16 (torch 2.13,
#: ``benchmarks/engines_e2e.py``, 2026-12-06); x2.3 / x2.5 on an earlier Zen 4 of the same kind, whose float32 was
#: slower. Tables in ``benchmarks/README.md``.
BF16_SPEEDUP = 1.7
#: The PSNR (dB) that ``--dtype bfloat16`` output keeps against float32: 50.7 dB measured for VToonify-D on a
#: frame of a portrait video (``benchmarks/bf16_accuracy.py``).
BF16_PSNR_DB = 42
#: /proc/cpuinfo flags of native bfloat16 arithmetic: AVX-512 BF16 dot products, AMX bfloat16 tiles.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: the ``dtype`` of the web demo's "fast" toggle and of the tip's advice
FAST_DTYPE = "bfloat16"
#: the web demo's explanation under its "fast" toggle (shown where :func:`fast_mode_available`)
FAST_TOGGLE_INFO = (f"bfloat16 on this CPU: about {BF16_SPEEDUP:.1f}x faster, output PSNR >= {BF16_PSNR_DB} dB "
                    "against the float32 default")

_CPUINFO = Path("/proc/cpuinfo")


def _read_cpuinfo(path: Path = _CPUINFO) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU feature flags of ``/proc/cpuinfo`` (or of the given text); None where there is no such file."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    if text is None:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_model_name(cpuinfo: str | None = None) -> str | None:
    """The ``model name`` line of ``/proc/cpuinfo`` (what ``lscpu`` prints as "Model name")."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return None


def _torch_reports_bf16() -> bool | None:
    """PyTorch's own CPU probe (the one its kernels dispatch on), where this build has it."""
    import torch

    probes = [getattr(torch._C._cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [p for p in probes if p is not None]
    if not probes:
        return None
    try:
        return any(bool(p()) for p in probes)
    except RuntimeError:
        return None


def native_bf16(flags: Iterable[str] | None = None, mkldnn: bool | None = None) -> bool:
    """True when oneDNN can run bfloat16 convolutions natively on this CPU.

    ``flags`` (a CPU flag set) and ``mkldnn`` (whether PyTorch was built with oneDNN) default to this machine's:
    ``/proc/cpuinfo``, falling back to PyTorch's CPU probe where that file does not exist.
    """
    import torch

    if mkldnn is None:
        mkldnn = torch.backends.mkldnn.is_available()
    if not mkldnn:
        return False
    if flags is None:
        flags = cpu_flags()
        if flags is None:
            return bool(_torch_reports_bf16())
    return any(f in set(flags) for f in NATIVE_BF16_FLAGS)


def fast_mode_available(device: torch.device | str | None, dtype: str | torch.dtype | None,
                        flags: Iterable[str] | None = None, mkldnn: bool | None = None, engine: str = "torch") -> bool:
    """True for a float32 run (``dtype`` None or float32) on a CPU (``device``; ``'auto'`` resolves as the
    pipeline resolves it) with native bfloat16, on an ``engine`` that computes in bfloat16 (torch, openvino; not
    onnxruntime): where ``--dtype bfloat16`` is worth suggesting."""
    import torch

    from common.errors import OptionError

    if engine != "torch":
        from pipeline.engines.runtimes import check_precision

        try:
            check_precision(engine, torch.bfloat16)
        except OptionError:
            return False

    if not _on_cpu(device) or dtype not in (None, "float32", torch.float32):
        return False
    return native_bf16(flags, mkldnn)


def _on_cpu(device: torch.device | str | None) -> bool:
    """Whether ``device`` (``'auto'`` resolved as the pipeline resolves it) is the CPU; False where CUDA is asked
    for but absent (the pipeline says so itself)."""
    from common.devices import resolve_device

    try:
        return resolve_device(device).type == "cpu"
    except RuntimeError:
        return False


@dataclass(frozen=True)
class MeasuredPath:
    """One way to run the pipeline on a CPU, as ``benchmarks/engines_e2e.py`` measured it end to end: ``speedup``
    over the torch float32 default (rounded down) and the PSNR its output keeps against that default (``psnr_db``,
    with margin)."""

    engine: str
    dtype: str
    speedup: float
    psnr_db: float

    @property
    def flags(self) -> str:
        parts = [] if self.engine == "torch" else [f"--engine {self.engine}"]
        return " ".join(parts + ([] if self.dtype == "float32" else [f"--dtype {self.dtype}"])) or "(the default)"


#: Every path measured end to end on a CPU with native bfloat16, (engine, dtype) -> speed-up over the torch float32
#: default (the slower backbone's, rounded down; ``benchmarks/engines_e2e.py`` on the sample video, table in
#: ``benchmarks/README.md``): what a run's own speed is taken to be. ONNX Runtime float32 x1.14 / x1.12, OpenVINO
#: float32 x1.39 / x1.35, OpenVINO bfloat16 x2.46 / x2.51 (VToonify-D / -T; x2.43 / x2.36 in an earlier run; the
#: smaller is kept), frames 54.2 / 54.5 dB against float32
#: (the torch bfloat16 path's 53.0 / 54.8), so the same PSNR floor as ``--dtype bfloat16``.
MEASURED_SPEEDUPS: dict[tuple[str, str], float] = {
    ("torch", "float32"): 1.0, ("torch", "bfloat16"): BF16_SPEEDUP, ("onnxruntime", "float32"): 1.1,
    ("openvino", "float32"): 1.3, ("openvino", "bfloat16"): 2.3}
#: The measured paths worth suggesting, fastest first, by whether the CPU computes bfloat16 natively. Without native
#: bfloat16 no path was measured: no tip there.
FAST_PATHS: dict[bool, tuple[MeasuredPath, ...]] = {
    True: tuple(MeasuredPath(engine, dtype, MEASURED_SPEEDUPS[(engine, dtype)], BF16_PSNR_DB)
                for engine, dtype in (("openvino", "bfloat16"), ("torch", "bfloat16"))),
    False: (),
}
#: a path is suggested only when it is at least this much faster than the run's own
_TIP_MIN_GAIN = 1.15


def _installed(engine: str) -> bool:
    return engine == "torch" or importlib.util.find_spec(engine) is not None


def speed_tip(device: torch.device | str | None, dtype: str | torch.dtype | None, engine: str = "torch",
              flags: Iterable[str] | None = None, mkldnn: bool | None = None,
              engines: Iterable[str] | None = None) -> str | None:
    """The one-line tip naming the fastest measured path (:data:`FAST_PATHS`) for a CPU run of ``engine`` in
    ``dtype`` on this CPU (``flags``, ``mkldnn``: as :func:`native_bf16`), or None: on a GPU, where the run is already
    the fastest (or within 15% of it), or where nothing was measured faster. ``engines``: the engines it may suggest
    (default: all; one that is not installed comes with its install command)."""
    if not _on_cpu(device):
        return None
    dtype = str(dtype or "float32").removeprefix("torch.")
    paths = [p for p in FAST_PATHS[native_bf16(flags, mkldnn)] if engines is None or p.engine in engines]
    if not paths:
        return None
    best = paths[0]
    own = MEASURED_SPEEDUPS.get((engine, dtype), 1.0)
    if (best.engine, best.dtype) == (engine, dtype) or best.speedup / own < _TIP_MIN_GAIN:
        return None
    install = ""
    if not _installed(best.engine):
        from pipeline.engines.runtimes import EXTRAS

        install = f'; pip install -e ".[{EXTRAS[best.engine]}]"'
    than = "the float32 default" if (engine, dtype) == ("torch", "float32") else "this run"
    which = "the fastest path" if engines is None else "a faster path"
    return (f"tip: {which} measured on a CPU like this one is {best.flags}: about {best.speedup / own:.1f}x "
            f"faster than {than} (output PSNR >= {best.psnr_db:g} dB against the float32 default, which reproduces "
            f"the original{install})")


def bf16_tip(device: torch.device | str | None, dtype: str | torch.dtype | None, flags: Iterable[str] | None = None,
             mkldnn: bool | None = None, engine: str = "torch") -> str | None:
    """:func:`speed_tip` limited to torch's own paths (``--dtype bfloat16``, named as "a faster path": OpenVINO's
    bfloat16 is faster still), for a float32 run on a CPU with native bfloat16 on an ``engine`` that computes in
    bfloat16; else None (GPU, another dtype, an engine without bfloat16, or a CPU where bfloat16 would be slower)."""
    if not fast_mode_available(device, dtype, flags, mkldnn, engine):
        return None
    return speed_tip(device, dtype, "torch", flags, mkldnn, engines=("torch",))
