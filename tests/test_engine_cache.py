"""The export cache of the ONNX engines (pipeline/engines/cache.py): reuse, rebuild when the checkpoint changes,
an unwritable folder, two processes exporting at once, pruning unused entries, and sweeping what a killed export left.

Most tests copy the session's tiny export (``exported``, in conftest.py) instead of exporting again.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from common.atomic import file_lock
from model.checkpoint import load_vtoonify
from pipeline.engines import export as export_module
from pipeline.engines.cache import ExportCache
from pipeline.engines.export import data_path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- cache
def _fake_export(source: Path, calls: list):
    """An export_onnx that copies ``source``'s export (the cache's logic without a 20 s export)."""

    def export_onnx(ckpt, output, **kwargs):
        calls.append(Path(ckpt))
        shutil.copyfile(data_path(source), data_path(output))
        shutil.copyfile(source, output)
        return export_module.ExportResult(Path(output), "vtoonify_toonify", 0.0)

    return export_onnx


def test_cache_reuses_and_rebuilds_when_the_checkpoint_changes(exported, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(export_module, "export_onnx", _fake_export(exported["onnx"]["t"], calls))
    ckpt = tmp_path / "vtoonify.pt"
    shutil.copyfile(exported["ckpt"]["t"], ckpt)
    notices: list[str] = []
    first = ExportCache(tmp_path / "cache", notice=notices.append).get(ckpt)
    again = ExportCache(tmp_path / "cache", notice=notices.append).get(ckpt)  # a new process's view: the folder
    assert first == again and len(calls) == 1 and len(notices) == 1
    model = load_vtoonify(ckpt)
    with torch.no_grad():
        model.encoder[5].bias.add_(1)
    torch.save({"g_ema": model.state_dict()}, ckpt)  # retrained: same name, other content
    rebuilt = ExportCache(tmp_path / "cache", notice=notices.append).get(ckpt)
    assert rebuilt != first and len(calls) == 2 and rebuilt.is_file() and first.is_file()


def test_unwritable_cache_folder_falls_back_to_a_temporary_one(exported, tmp_path, monkeypatch):
    import tempfile

    calls: list = []
    monkeypatch.setattr(export_module, "export_onnx", _fake_export(exported["onnx"]["t"], calls))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "file").write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        path = ExportCache(tmp_path / "file" / "cache", notice=lambda line: None).get(exported["ckpt"]["t"])
    assert path.is_file() and path.is_relative_to(tmp_path / "tmp") and len(calls) == 1


_RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.engines import export as export_module
    from pipeline.engines.cache import ExportCache
    from pipeline.engines.export import data_path

    ckpt, folder, log, go = map(Path, sys.argv[1:5])

    class SlowProgram:  # writes the model and its data in pieces, slowly: a reader of a partial file would see it
        def save(self, path, external_data):
            for target in (data_path(path), Path(path)):
                with open(target, "wb") as f:
                    for _ in range(5):
                        f.write(b"x" * 1000)
                        f.flush()
                        time.sleep(0.05)

    def slow_export(ckpt, output, **kwargs):  # the real export's saving, with a slow program
        with open(log, "a") as f:
            f.write("export\\n")
        export_module._save(SlowProgram(), Path(output))
        return export_module.ExportResult(Path(output), "bisenet", 0.5)

    export_module.export_onnx = slow_export
    cache = ExportCache(folder, notice=lambda line: None)
    cache.key(ckpt)  # hashed before the start line, so both processes reach the lock together
    while not go.exists():
        time.sleep(0.01)
    path = cache.get(ckpt)
    print(path, path.stat().st_size, data_path(path).stat().st_size)
""")


def test_two_processes_exporting_at_once_export_once_and_whole(exported, tmp_path):
    ckpt, log, go = exported["ckpt"]["t"], tmp_path / "log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(ckpt), str(tmp_path / "cache"), str(log), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    entry = ExportCache(tmp_path / "cache").entry(ckpt)
    go.touch()
    seen = set()  # what a reader that takes no lock finds under the entry's name while they run
    while any(p.poll() is None for p in procs):
        with contextlib.suppress(FileNotFoundError):
            seen.add((entry.stat().st_size, data_path(entry).stat().st_size))
    results = [p.communicate(timeout=120) for p in procs]
    assert seen <= {(5000, 5000)}, seen  # whole files or none
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    assert log.read_text() == "export\n"  # one export; the other process waited and took its file
    assert results[0][0] == results[1][0] and results[0][0].split()[1:] == ["5000", "5000"]
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith((".onnx", ".data", ".lock"))]
    assert not leftovers


def _entry_files(folder: Path, name: str, days_old: float) -> Path:
    """An entry ``name`` (model and data file) last used ``days_old`` days ago."""
    model = folder / name
    for f in (model, data_path(model)):
        f.write_bytes(b"x" * 1000)
        os.utime(f, (time.time() - days_old * 86400,) * 2)
    return model


def test_export_prunes_unused_entries_but_not_fresh_or_locked_ones(exported, tmp_path, monkeypatch):
    """After an export the entries unused for PRUNE_AFTER_DAYS go; a recently used one, one another process holds
    and files that are not entries stay."""
    from common.atomic import file_lock
    from pipeline.engines.cache import PRUNE_AFTER_DAYS

    monkeypatch.setattr(export_module, "export_onnx", _fake_export(exported["onnx"]["t"], []))
    folder = tmp_path / "cache"
    folder.mkdir()
    old = PRUNE_AFTER_DAYS + 1
    stale = _entry_files(folder, "vtoonify-" + "a" * 24 + ".onnx", old)  # an older checkpoint's or exporter's
    other = _entry_files(folder, "vtoonify_s_d-" + "b" * 24 + ".onnx", old)  # another style, unused as long
    fresh = _entry_files(folder, "vtoonify_s_d-" + "c" * 24 + ".onnx", PRUNE_AFTER_DAYS - 1)
    held = _entry_files(folder, "faceparsing-" + "d" * 24 + ".onnx", old)
    orphan = data_path(_entry_files(folder, "vtoonify-" + "e" * 24 + ".onnx", old))  # killed between the renames
    orphan.with_name(orphan.name.removesuffix(".data")).unlink()
    mine = _entry_files(folder, "notes.onnx", old)  # not an entry's name
    notices: list[str] = []
    cache = ExportCache(folder, notice=notices.append)
    with file_lock(held, shared=True):  # a process loading it (flock: another open file, as another process's)
        built = cache.get(exported["ckpt"]["t"])
    left = {p.name for p in folder.iterdir() if not p.name.endswith(".lock")}
    assert left == {f.name for m in (built, fresh, held, mine) for f in (m, data_path(m))}, left
    assert not {stale.name, other.name, orphan.name} & left
    assert len(notices) == 2 and notices[1].startswith("removed 3 engine export(s) unused for 30 days"), notices
    os.utime(held, (time.time() - old * 86400,) * 2)
    assert cache.prune() == [held]  # released now
    # a use marks the entry as used: it is kept however old its file was
    os.utime(built, (time.time() - old * 86400,) * 2)
    assert cache.get(exported["ckpt"]["t"]) == built and cache.prune() == [] and built.is_file()


_KILLED = """
import os, sys, time
from pathlib import Path
from pipeline.engines import export as export_module
from pipeline.engines.cache import ExportCache

class Stuck:  # writes part of the data file into the scratch folder, then hangs until killed
    def save(self, path, external_data):
        Path(str(path) + ".data").write_bytes(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(600)

def export(ckpt, output, **kwargs):
    export_module._save(Stuck(), Path(output))

export_module.export_onnx = export
ExportCache(sys.argv[2], notice=print).get(sys.argv[1])
"""


def test_scratch_of_an_export_killed_with_sigkill_is_swept_at_the_next_build(exported, tmp_path, monkeypatch):
    import signal

    folder, ckpt = tmp_path / "cache", exported["ckpt"]["t"]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(ckpt), str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (scratch,) = [p for p in folder.iterdir() if p.name.endswith(".partial.d")]
    assert scratch.name.startswith(".vtoonify-") and f".{proc.pid}-" in scratch.name and any(scratch.iterdir())
    # another target's leftovers of a dead process go too; a living process's stay
    dead = folder / f".vtoonify_s_d-{'f' * 24}.onnx.{proc.pid}-0123abcd.partial.onnx"
    alive = folder / f".vtoonify_s_d-{'f' * 24}.onnx.d.{os.getppid()}-0123abcd.partial.d"
    dead.write_bytes(b"x")
    alive.mkdir()
    # a dead-looking writer whose entry is locked (another machine or container sharing the folder) keeps its data
    locked_entry = folder / f"vtoonify_s_d-{'e' * 24}.onnx"
    locked = folder / f".{locked_entry.name}.data.{proc.pid}-0123abcd.partial.data"
    locked.write_bytes(b"x")
    calls: list = []
    monkeypatch.setattr(export_module, "export_onnx", _fake_export(exported["onnx"]["t"], calls))
    with file_lock(locked_entry):
        path = ExportCache(folder, notice=lambda line: None).get(ckpt)  # the lock went with the killed process
    assert len(calls) == 1 and path.is_file()
    assert not scratch.exists() and not dead.exists() and alive.is_dir() and locked.is_file()
    # the export's own save sweeps its scratch folders too (an export to a file of one's own, not in a cache)
    target = tmp_path / "own" / "model.onnx"
    target.parent.mkdir()
    left = tmp_path / "own" / f".model.onnx.d.{proc.pid}-0123abcd.partial.d"
    left.mkdir()
    (left / "model.onnx.data").write_bytes(b"x")

    class Program:
        def save(self, path, external_data):
            Path(str(path) + ".data").write_bytes(b"d")
            Path(path).write_bytes(b"m")

    export_module._save(Program(), target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
