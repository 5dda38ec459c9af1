"""The build and fallback rules of the CUDA extensions (``model.stylegan.op._cuda_build``), checked on any machine:
nothing is ever built here (``cpp_extension.load`` is a recorder)."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from model.stylegan.op import _cuda_build, fused_act_cuda, upfirdn2d_cuda

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def build_env(monkeypatch, tmp_path):
    """A fresh per-process cache, a temporary build cache and a ``cpp_extension.load`` that records calls.

    The returned list collects the keyword arguments of each ``load`` call; by default ``load`` fails
    the test, so a test that expects a build sets ``build_env.result`` (a module or an exception).
    """
    from torch.utils import cpp_extension

    calls = []

    class Load:
        result = None

        def __call__(self, **kwargs):
            calls.append(kwargs)
            if self.result is None:
                pytest.fail("cpp_extension.load must not be called here")
            if isinstance(self.result, BaseException):
                raise self.result
            return self.result

    load = Load()
    monkeypatch.setattr(cpp_extension, "load", load)
    monkeypatch.setattr(_cuda_build, "_results", {})
    monkeypatch.setenv(_cuda_build.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(_cuda_build.OPS_ENV, raising=False)
    load.calls = calls
    return load


def _pretend_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0")


def test_no_build_without_cuda(monkeypatch, build_env):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("upfirdn2d", "fused_bias_act"):
        assert _cuda_build.get_extension(name) is None
        assert not _cuda_build.cuda_ops_available(name)
    assert not upfirdn2d_cuda.available()
    assert not fused_act_cuda.available()
    assert build_env.calls == []


def test_no_build_with_a_cpu_only_torch(monkeypatch, build_env):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert _cuda_build.get_extension("upfirdn2d") is None
    assert build_env.calls == []


def test_env_ref_disables_the_extensions(monkeypatch, build_env):
    _pretend_cuda(monkeypatch)
    monkeypatch.setenv(_cuda_build.OPS_ENV, "ref")
    assert _cuda_build.get_extension("upfirdn2d") is None
    assert not fused_act_cuda.available()
    assert build_env.calls == []
    assert _cuda_build._results == {}


def test_build_is_cached_per_process(monkeypatch, build_env, tmp_path):
    _pretend_cuda(monkeypatch)
    module = types.ModuleType("vtoonify_upfirdn2d")
    build_env.result = module
    assert _cuda_build.get_extension("upfirdn2d") is module
    assert _cuda_build.get_extension("upfirdn2d") is module
    assert len(build_env.calls) == 1
    kwargs = build_env.calls[0]
    assert kwargs["name"] == "vtoonify_upfirdn2d"
    assert [Path(s).name for s in kwargs["sources"]] == ["upfirdn2d.cpp", "upfirdn2d_kernel.cu"]
    assert all(Path(s).is_file() for s in kwargs["sources"])
    build_dir = Path(kwargs["build_directory"])
    assert build_dir.parent == tmp_path and build_dir.is_dir()
    assert build_dir.name.startswith("upfirdn2d-") and len(build_dir.name) == len("upfirdn2d-") + 16
    assert kwargs["verbose"] is False


def test_build_failure_warns_once_and_falls_back(monkeypatch, build_env):
    _pretend_cuda(monkeypatch)
    build_env.result = RuntimeError(
        "Error building extension 'vtoonify_upfirdn2d'\n[1/3] nvcc ... upfirdn2d_kernel.cu\n"
        "upfirdn2d_kernel.cu(42): error: something is wrong\n1 error detected\n"
    )
    with pytest.warns(RuntimeWarning) as record:
        assert _cuda_build.get_extension("upfirdn2d") is None
        assert _cuda_build.get_extension("upfirdn2d") is None
        assert not upfirdn2d_cuda.available()
    assert len(record) == 1
    message = str(record[0].message)
    assert "'upfirdn2d'" in message and "reference" in message
    assert "Error building extension" in message and "error: something is wrong" in message
    assert len(build_env.calls) == 1


def test_build_key_follows_the_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    sources = _cuda_build._source_files("upfirdn2d")
    copies = []
    for source in sources:
        copies.append(tmp_path / source.name)
        copies[-1].write_bytes(source.read_bytes())
    key = _cuda_build._build_key(sources)
    assert _cuda_build._build_key(copies) == key
    copies[1].write_bytes(sources[1].read_bytes() + b"\n// edited\n")
    assert _cuda_build._build_key(copies) != key
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    assert _cuda_build._build_key(sources) != key


def test_importing_the_ops_does_not_load_the_build_tools():
    code = (
        "import sys; import model.stylegan.op, model.stylegan.op.upfirdn2d_cuda, model.stylegan.op.fused_act_cuda; "
        "assert 'torch.utils.cpp_extension' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
