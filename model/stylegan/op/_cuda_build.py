"""Just-in-time build and loading of the optional CUDA extensions of the custom ops.

The CUDA sources live in ``model/stylegan/op/cuda/``: extension ``<name>`` is built from
``<name>.cpp`` (Python bindings and argument checks) and ``<name>_kernel.cu`` (the kernels).
They are compiled on first use with :func:`torch.utils.cpp_extension.load` (ninja) into a
cache directory whose name contains a hash of everything that determines the binary:

* the bytes of the source files,
* the torch version and the CUDA version torch was built with,
* the compiler flags used here and the target GPU architectures
  (``TORCH_CUDA_ARCH_LIST`` if set, otherwise the compute capabilities of the visible GPUs).

Editing a source file therefore triggers a rebuild, and an unchanged build is simply loaded
again (about 10 ms). The cache root is ``$VTOONIFY_EXT_CACHE`` if set, otherwise
``$XDG_CACHE_HOME/vtoonify_ext`` (``~/.cache/vtoonify_ext``). Concurrent builds of the same
extension by several processes are serialised by torch's own lock file in the build
directory; within a process a lock serialises the first calls.

Nothing here builds or imports the C++ toolchain eagerly. A build is only ever attempted on
the first call of :func:`get_extension`, and only when ``torch.cuda.is_available()`` and
torch was built with CUDA (``torch.version.cuda``); on CPU-only machines the function returns
``None`` at once. Setting the environment variable ``VTOONIFY_OPS=ref`` disables the
extensions altogether (the reference PyTorch implementations are used).

A failed build or load emits a single :class:`RuntimeWarning` per extension and process, and
the failure is remembered so that the build is not retried in that process.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import types
import warnings
from pathlib import Path

import torch

__all__ = ["get_extension", "cuda_ops_available", "EXTENSIONS", "build_directory", "build_extension", "loaded"]

#: Directory holding ``<name>.cpp`` and ``<name>_kernel.cu`` for every extension.
SOURCE_DIR = Path(__file__).resolve().parent / "cuda"

#: The extensions, by the stem of their files in :data:`SOURCE_DIR`.
EXTENSIONS = ("upfirdn2d", "fused_bias_act")

#: Environment variable that, when set to ``ref``, disables the CUDA extensions.
OPS_ENV = "VTOONIFY_OPS"

#: Environment variable that overrides the root of the build cache.
CACHE_ENV = "VTOONIFY_EXT_CACHE"

_EXTRA_CFLAGS = ("-O3",)
_EXTRA_CUDA_CFLAGS = ("-O3",)

# Lines of a compiler/linker log that describe the problem.
_PROBLEM = re.compile(r"error|fatal|cannot|undefined|not found", re.IGNORECASE)

_lock = threading.Lock()
# name -> loaded module, or None when the build/load failed in this process.
_results: dict[str, types.ModuleType | None] = {}


def _disabled_by_env() -> bool:
    return os.environ.get(OPS_ENV, "").strip().lower() == "ref"


def _cuda_usable() -> bool:
    return torch.version.cuda is not None and torch.cuda.is_available()


def _source_files(name: str) -> list[Path]:
    """The source files of extension ``name``, in build order."""
    return [SOURCE_DIR / f"{name}.cpp", SOURCE_DIR / f"{name}_kernel.cu"]


def _target_archs() -> str:
    """The GPU architectures the build targets, as torch's build will choose them."""
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if arch_list:
        return arch_list
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(capabilities))


def _build_key(sources: list[Path]) -> str:
    """A short hash of everything that determines the compiled binary (see the module docstring)."""
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    for item in (
        torch.__version__,
        str(torch.version.cuda),
        _target_archs(),
        " ".join(_EXTRA_CFLAGS),
        " ".join(_EXTRA_CUDA_CFLAGS),
    ):
        digest.update(item.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vtoonify_ext"


def _shorten(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 4] + " ..."


def _summarise_error(error: BaseException, max_lines: int = 8, max_width: int = 300) -> str:
    """The first line of an error message and the lines that describe the problem (or the first lines)."""
    lines = [_shorten(line.rstrip(), max_width) for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    picked = [lines[0]] + [line for line in lines[1:] if _PROBLEM.search(line)]
    if len(picked) == 1:
        picked = lines
    summary = "\n".join(picked[:max_lines])
    if len(picked) > max_lines:
        summary += "\n..."
    return f"{type(error).__name__}: {summary}"


def build_directory(name: str) -> Path:
    """The cache directory of the current build of extension ``name`` (see the module docstring)."""
    return _cache_root() / f"{name}-{_build_key(_source_files(name))}"


def build_extension(name: str, verbose: bool = False) -> types.ModuleType:
    """Compile (or reuse the cached build of) extension ``name`` and import it.

    Unlike :func:`get_extension` this needs no GPU (only a CUDA build of torch, a CUDA compiler
    and ``TORCH_CUDA_ARCH_LIST``) and raises on failure instead of warning. ``verbose=True`` lets
    the compiler's output (warnings included) through to file descriptor 1; ``.ci/build_cuda.sh``
    uses it to compile the extensions on machines without a GPU.
    """
    from torch.utils import cpp_extension  # imported lazily: only ever needed on CUDA machines

    if name not in EXTENSIONS:
        raise ValueError(f"unknown CUDA extension {name!r}; expected one of {EXTENSIONS}")
    build_dir = build_directory(name)
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=f"vtoonify_{name}",
        sources=[str(path) for path in _source_files(name)],
        extra_cflags=list(_EXTRA_CFLAGS),
        extra_cuda_cflags=list(_EXTRA_CUDA_CFLAGS),
        build_directory=str(build_dir),
        with_cuda=True,
        verbose=verbose,
    )


def get_extension(name: str) -> types.ModuleType | None:
    """Return the compiled CUDA extension ``name``, building it on first use.

    Args:
        name: ``"upfirdn2d"`` or ``"fused_bias_act"`` (the stem of the files in ``cuda/``).

    Returns:
        The extension module, or ``None`` if the extensions are disabled
        (``VTOONIFY_OPS=ref``), CUDA is not usable, or the build/load failed (in which case one
        :class:`RuntimeWarning` is emitted per extension and process). Callers then use the
        reference PyTorch implementation.
    """
    if _disabled_by_env():
        return None
    if name in _results:
        return _results[name]
    if not _cuda_usable():
        return None
    with _lock:
        if name not in _results:
            try:
                _results[name] = build_extension(name)
            except Exception as error:  # any build/load failure means: use the reference ops
                _results[name] = None
                warnings.warn(
                    f"Could not build or load the CUDA extension '{name}'; falling back to the "
                    f"reference PyTorch implementation.\n{_summarise_error(error)}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return _results[name]


def cuda_ops_available(name: str) -> bool:
    """Whether the CUDA extension ``name`` can be used (builds it on first call if needed)."""
    return get_extension(name) is not None


def loaded(name: str) -> bool:
    """Whether extension ``name`` has been built and loaded in this process (never builds anything)."""
    return _results.get(name) is not None
