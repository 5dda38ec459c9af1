"""The one cache of loaded pipelines (pipeline/registry.py): LRU order, keys, files checked before a load, threads.

The pipeline class is replaced by a recorder (loading real models is the app's and the figures' tests' job, which
go through this cache too), so these tests take milliseconds.
"""
from __future__ import annotations

import threading
import time

import pytest

from common.errors import MissingFileError, OptionError
from pipeline import registry
from pipeline.registry import LRU, PipelineCache, default_model, released_path


class Loaded:
    """Stands in for ``VToonifyPipeline``: remembers its arguments."""

    def __init__(self, ckpt, **kwargs):
        self.ckpt, self.kwargs = ckpt, kwargs


@pytest.fixture
def loads(monkeypatch) -> list[Loaded]:
    made: list[Loaded] = []

    def load(ckpt, **kwargs):
        made.append(Loaded(ckpt, **kwargs))
        return made[-1]

    monkeypatch.setattr(registry, "VToonifyPipeline", load)
    return made


@pytest.fixture
def files(tmp_path):
    """Two models and the helper networks (empty files: only their existence is checked before a load)."""
    paths = {name: tmp_path / rel for name, rel in [("d", "vtoonify_d_cartoon/vtoonify_s_d.pt"),
                                                     ("t", "vtoonify_t_cartoon/vtoonify.pt"),
                                                     ("x", "vtoonify_d_arcane/vtoonify_s_d.pt"),
                                                     ("encoder", "encoder.pt"), ("faceparsing", "faceparsing.pth")]}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return paths


def _options(files, **extra):
    return {"style_encoder_path": files["encoder"], "faceparsing_path": files["faceparsing"], "device": "cpu", **extra}


def test_same_configuration_same_pipeline(loads, files, tmp_path, monkeypatch):
    cache = PipelineCache(2)
    pipe = cache.get(files["d"], **_options(files))
    # the same files by other paths: a string, a relative path, a symbolic link
    (tmp_path / "link.pt").symlink_to(files["d"])
    monkeypatch.chdir(tmp_path)
    assert cache.get(str(files["d"]), **_options(files)) is pipe
    assert cache.get("vtoonify_d_cartoon/vtoonify_s_d.pt", **_options(files)) is pipe
    assert cache.get(tmp_path / "link.pt", **_options(files)) is pipe
    assert cache.get(files["d"], style_encoder_path="encoder.pt", faceparsing_path=str(files["faceparsing"]),
                     device="cpu") is pipe
    assert len(loads) == 1 and len(cache) == 1
    assert loads[0].kwargs == {"backbone": None, **_options(files)}  # handed over as given


def test_other_options_other_pipeline(loads, files):
    cache = PipelineCache(4)
    plain = cache.get(files["d"], **_options(files))
    fast = cache.get(files["d"], **_options(files, dtype="bfloat16"))
    assert fast is not plain and fast.kwargs["dtype"] == "bfloat16"
    assert cache.get(files["d"], **_options(files, dtype="bfloat16")) is fast
    assert cache.get(files["d"], backbone="dualstylegan", **_options(files)) not in (plain, fast)
    assert cache.get(files["d"], **_options(files, exstyle_path=files["x"].parent / "codes.npy")) not in (plain, fast)
    assert len(loads) == 4


def test_the_engine_is_part_of_the_key(loads, files):
    cache = PipelineCache(3)
    plain = cache.get(files["d"], **_options(files))
    assert cache.get(files["d"], **_options(files, engine="torch")) is plain  # the default, said or not
    onnx = cache.get(files["d"], **_options(files, engine="onnxruntime"))
    assert onnx is not plain and onnx.kwargs["engine"] == "onnxruntime"
    assert cache.get(files["d"], **_options(files, engine="openvino")) not in (plain, onnx)
    assert cache.get(files["d"], **_options(files, engine="onnxruntime")) is onnx
    assert [k.engine for k in cache.keys()] == ["torch", "openvino", "onnxruntime"] and len(loads) == 3
    with pytest.raises(OptionError) as error:  # refused before anything is dropped to make room
        cache.get(files["d"], **_options(files, engine="tvm"))
    assert str(error.value) == "engine must be one of torch, onnxruntime, openvino, tensorrt, got 'tvm'"
    assert [k.engine for k in cache.keys()] == ["torch", "openvino", "onnxruntime"] and len(loads) == 3


def test_least_recently_used_is_dropped(loads, files):
    cache = PipelineCache(2)
    d = cache.get(files["d"], **_options(files))
    t = cache.get(files["t"], **_options(files))
    assert cache.get(files["d"], **_options(files)) is d  # used again: now the most recent
    assert [k.ckpt for k in cache.keys()] == [str(files["t"]), str(files["d"])]
    x = cache.get(files["x"], **_options(files))  # makes room by dropping T
    assert [k.ckpt for k in cache.keys()] == [str(files["d"]), str(files["x"])]
    assert cache.get(files["d"], **_options(files)) is d and len(loads) == 3
    assert cache.get(files["t"], **_options(files)) is not t and len(loads) == 4  # loaded again
    assert [k.ckpt for k in cache.keys()] == [str(files["d"]), str(files["t"])] and x not in [d, t]
    cache.clear()
    assert len(cache) == 0 and cache.keys() == []


def test_missing_files_are_named_before_anything_is_dropped(loads, files):
    cache = PipelineCache(1)
    cache.get(files["d"], **_options(files))
    files["t"].unlink()
    with pytest.raises(MissingFileError, match="Checkpoint not found: .*vtoonify.pt") as error:
        cache.get(files["t"], **_options(files))
    assert "python -m hub.download --backbone toonify --style cartoon" in str(error.value)
    with pytest.raises(MissingFileError, match="Checkpoint not found: .*nothing.pt"):
        cache.get(files["d"], **_options(files, style_encoder_path=files["encoder"].parent / "nothing.pt"))
    assert [k.ckpt for k in cache.keys()] == [str(files["d"])] and len(loads) == 1  # still loaded


def test_threads_asking_for_one_model_load_it_once(monkeypatch, files):
    made = []

    def slow(ckpt, **kwargs):
        time.sleep(0.05)  # long enough for every thread to ask while the first load runs
        made.append(object())
        return made[-1]

    monkeypatch.setattr(registry, "VToonifyPipeline", slow)
    cache = PipelineCache(2)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(files["d"], **_options(files)))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and len(got) == 8 and all(p is made[0] for p in got)


def test_lru_limits():
    with pytest.raises(OptionError, match="at least 1 thumbnail"):
        LRU(0, "thumbnail")
    cache: LRU[str, int] = LRU(2)
    assert cache.get_or_make("a", lambda: 1) == 1 and cache.get_or_make("a", lambda: 2) == 1
    cache.get_or_make("b", lambda: 3)
    cache.get_or_make("c", lambda: 4)
    assert cache.keys() == ["b", "c"] and "a" not in cache


def test_default_paths_come_from_the_released_table():
    assert released_path("encoder.pt") == "./checkpoint/encoder.pt"
    assert default_model() == "./checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt"
    assert default_model(color_transfer=True) == "./checkpoint/vtoonify_d_cartoon/vtoonify_s_d_c.pt"
    assert default_model("toonify") == "./checkpoint/vtoonify_t_cartoon/vtoonify.pt"
