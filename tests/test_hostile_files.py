"""Files checked, not taken on trust, and file-system messages that name the user's output (issue 24, causes 5
and 6): small synthesised banks, parsing maps, audio files, long names, full disks and unwritable folders."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import av
import numpy as np
import pytest
from stylize_helpers import PAD_ARGS, run

import style_transfer
from common import atomic
from common.atomic import (
    NAME_MAX,
    atomic_output,
    check_writable_folder,
    new_folders_removed,
    store_cache,
    sweep_stale,
    temporary_path,
)
from common.errors import InputError, OptionError
from conftest import make_pipeline, model_path
from pipeline import results
from pipeline.parsing import ParsingMaps
from pipeline.styles import StyleCodeError, load_exstyle_codes, save_exstyle_codes
from pipeline.videoio import VideoError, probe


def _codes(n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"s{i}.jpg": rng.standard_normal((1, 18, 512)).astype(np.float32) for i in range(n)}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------ cause 5: files
@pytest.mark.parametrize("value, dtype, words", [(np.nan, np.float32, "non-finite"), (np.inf, np.float32, "non-finite"),
                                                 (1e300, np.float64, "non-finite"), (1, np.int64, "is int64")])
def test_exstyle_bank_with_bad_values_is_refused_naming_file_and_entry(tmp_path, value, dtype, words):
    codes = _codes()
    codes["s1.jpg"] = codes["s1.jpg"].astype(dtype)
    codes["s1.jpg"][0, 3, 7] = value
    path = tmp_path / "exstyle_code.npy"
    save_exstyle_codes(path, codes)
    with pytest.raises(StyleCodeError) as e:
        load_exstyle_codes(path)
    assert str(path) in str(e.value) and "'s1.jpg'" in str(e.value) and words in str(e.value), e.value


def test_nan_bank_stops_style_transfer_in_one_line_instead_of_a_black_result(ckpt, tmp_path, astronaut_jpg, capsys):
    codes = load_exstyle_codes(model_path(ckpt).parent / "exstyle_code.npy")
    first = next(iter(codes))
    codes[first] = np.full_like(codes[first], np.nan)
    bank = tmp_path / "nan_bank.npy"
    save_exstyle_codes(bank, codes)
    assert run(ckpt, tmp_path / "out", "--content", str(astronaut_jpg), "--scale_image", *PAD_ARGS,
               "--exstyle_path", str(bank)) == 1
    assert f"{bank}: entry {first!r} has" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()  # nothing written, no folder left


def test_parsing_maps_are_checked_per_frame_naming_file_and_frame(tmp_path):
    maps = np.zeros((4, 19, 16, 8), np.float32)
    maps[2, 5, 3, 3] = np.nan
    path = tmp_path / "maps.npy"
    np.save(path, maps)
    loaded = ParsingMaps(path)
    assert loaded[1].shape == (19, 16, 8)
    with pytest.raises(InputError, match=f"{path}: the parsing map of frame 2 holds non-finite"):
        loaded[2]
    np.save(path, np.zeros((4, 19, 16, 8), np.int16))
    with pytest.raises(InputError, match="must be floating point"):
        ParsingMaps(path)


def test_audio_only_file_is_no_video_stream_not_damaged(tmp_path):
    path = tmp_path / "voice.mp4"  # an MP4 container holding AAC audio only (an .m4a under another name)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(VideoError) as e:
        probe(path)
    assert "no video stream in it" in str(e.value) and "audio" in str(e.value)
    assert "damaged" not in str(e.value)


# ----------------------------------------------------------------------------------- cause 6: file system
def test_temporary_names_stay_within_the_name_limit_and_unique(tmp_path):
    name = "é" * 100 + "x" * 46 + ".jpg"  # 250 bytes: a valid name, too long with the temporary marks around it
    assert len(os.fsencode(name)) <= NAME_MAX
    target = tmp_path / name
    tmps = {temporary_path(target) for _ in range(20)}
    assert len(tmps) == 20 and all(len(os.fsencode(t.name)) <= NAME_MAX for t in tmps)
    assert all(t.suffix == ".jpg" for t in tmps)
    stem = next(iter(tmps)).name.split(".")[1]  # shortened, with a hash of the whole name: other targets differ
    sibling = temporary_path(tmp_path / ("é" * 100 + "x" * 45 + "y.jpg")).name.split(".")[1]
    assert "~" in stem and sibling != stem and sibling[:100] == stem[:100]
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and os.listdir(tmp_path) == [name]
    stale = temporary_path(target)  # a dead writer's file is still found by the sweep
    dead = stale.with_name(stale.name.replace(f".{os.getpid()}-", ".999999999-"))
    dead.write_bytes(b"half")
    assert sweep_stale(target) == [dead]


def test_errors_name_the_users_output_not_the_temporary_file(tmp_path):
    target = tmp_path / "result.jpg"
    with pytest.raises(OSError) as e, atomic_output(target) as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    with pytest.raises(RuntimeError) as e, atomic_output(target) as tmp:
        raise RuntimeError(f"could not write {tmp}")
    assert str(e.value) == f"could not write {target}" and ".partial" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_full_disk_says_so_and_leaves_no_half_pair(tmp_path, monkeypatch):
    """The second file of an input/result pair meets a full disk (/dev/full): neither file appears."""
    opened = []

    def full_on_second(path, mode="r", *args, **kwargs):
        opened.append(path)
        return open(os.devnull if len(opened) == 1 else "/dev/full", mode, *args, **kwargs)

    monkeypatch.setattr(results, "open", full_on_second, raising=False)
    pair = [tmp_path / "a_input.jpg", tmp_path / "a_vtoonify_d.jpg"]
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(OSError) as e:
        results.atomic_imwrite_all([(pair[0], image), (pair[1], image)])
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(pair[1])
    assert "No space left on device" in str(e.value) and ".partial" not in str(e.value)
    assert os.listdir(tmp_path) == []


def _cli(tmp_path, content, out) -> list[str]:
    return ["--content", str(content), "--output_path", str(out), "--ckpt", str(tmp_path / "missing.pt")]


def test_unwritable_or_dangling_output_folder_is_found_before_the_work(tmp_path, astronaut_jpg, capsys, monkeypatch):
    """One line, before any checkpoint is looked for (the model does not exist here)."""
    link = tmp_path / "results"
    link.symlink_to(tmp_path / "gone")
    assert style_transfer.main(_cli(tmp_path, astronaut_jpg, link)) == 1
    err = _one_error_line(capsys)
    assert "is a symbolic link to" in err and "does not exist" in err and "File exists" not in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert style_transfer.main(_cli(tmp_path, astronaut_jpg, blocker / "out")) == 1
    assert f"{blocker} is a file, not a folder" in _one_error_line(capsys)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))  # root
    for out, words in ((locked, "no permission to write in this folder"), (locked / "new", "where it would be created")):
        assert style_transfer.main(_cli(tmp_path, astronaut_jpg, out)) == 1
        assert words in _one_error_line(capsys)
    with pytest.raises(OptionError):
        check_writable_folder(locked / "a" / "b", "--output_path")


def test_failed_run_leaves_no_empty_folder_it_created(ckpt, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    results.atomic_imwrite(blank, np.full((64, 64, 3), 127, np.uint8))  # no face in it
    out = tmp_path / "new" / "nested"
    assert run(ckpt, out, "--content", str(blank), "--scale_image", *PAD_ARGS) == 1
    assert "no face" in _one_error_line(capsys)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(ValueError), new_folders_removed(kept / "x"):
        (kept / "x").mkdir()
        raise ValueError
    assert kept.is_dir() and not (kept / "x").exists()  # only what did not exist before is removed


def test_unwritable_cache_folder_is_a_warning_not_a_failure(tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")

    def write(tmp):
        np.save(tmp, np.zeros(3, np.float32))

    assert store_cache(blocker / "exstyle" / "entry.npy", write) is False
    err = capsys.readouterr().err
    assert err.startswith("warning: cache not written") and err.count("\n") == 1
    assert store_cache(tmp_path / "ok" / "entry.npy", write) is True and (tmp_path / "ok" / "entry.npy").is_file()


def test_exemplar_code_with_an_unwritable_cache_still_works(ckpt, tmp_path, capsys):
    from skimage import data as skdata

    from pipeline.exstyle import ExemplarEncoder

    pipe = make_pipeline(ckpt)
    blocker = tmp_path / "cache"
    blocker.write_text("x")
    code = ExemplarEncoder(pipe.pspencoder, pipe.detector, n_latent=18, cache_dir=blocker / "sub").code(skdata.astronaut())
    assert code.shape == (1, 18, 512) and np.isfinite(code).all()
    assert "warning: cache not written" in capsys.readouterr().err
