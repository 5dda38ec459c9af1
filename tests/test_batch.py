"""Many inputs in one style_transfer.py run (pipeline/batch.py) on the fill-rule checkpoints."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata
from stylize_helpers import PAD_ARGS, run

from pipeline.batch import discover, media_kind


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, astronaut_jpg, astronaut_video) -> Path:
    """in/a/x.png, in/b/x.png (another picture, same name), in/clip.bin (a video under a name that does not say so),
    in/broken.jpg (damaged), in/cup.png (no face), in/notes.txt (no media) and a hidden file."""
    root = tmp_path_factory.mktemp("batch") / "in"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    shutil.copy(astronaut_jpg, root / "a" / "x.png")
    flipped = np.ascontiguousarray(skdata.astronaut()[:, ::-1])
    cv2.imwrite(str(root / "b" / "x.png"), cv2.cvtColor(flipped, cv2.COLOR_RGB2BGR))
    shutil.copy(astronaut_video, root / "clip.bin")
    cv2.imwrite(str(root / "cup.png"), skdata.coffee()[:200, :200])  # no face
    (root / "broken.jpg").write_bytes(astronaut_jpg.read_bytes()[:5000][::-1])
    (root / "notes.txt").write_text("not a picture")
    (root / ".hidden.png").write_bytes(b"x")
    return root


def test_media_kind_reads_the_content(photo_folder):
    assert media_kind(photo_folder / "a" / "x.png") == "image"
    assert media_kind(photo_folder / "clip.bin") == "video"
    assert media_kind(photo_folder / "broken.jpg") is None
    assert media_kind(photo_folder / "notes.txt") is None


def test_discover_keeps_relative_folders(photo_folder):
    found = {(i.path.relative_to(photo_folder).as_posix(), i.subdir, i.named) for i in discover([str(photo_folder)])}
    assert found == {("a/x.png", "a", False), ("b/x.png", "b", False), ("broken.jpg", "", False), ("cup.png", "", False),
                     ("clip.bin", "", False), ("notes.txt", "", False)}
    globbed = discover([str(photo_folder / "*" / "x.png"), str(photo_folder / "a" / "x.png")])  # each file once
    assert [(i.path.name, i.subdir) for i in globbed] == [("x.png", "a"), ("x.png", "b")]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_folder_of_photos_and_a_video(ckpt, photo_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(ckpt, out, "--content", str(photo_folder), "--scale_image", *PAD_ARGS) == 1  # broken.jpg, cup.png failed
    err = capsys.readouterr().err
    assert sorted(_mtimes(out)) == ["a/x_input.jpg", "a/x_vtoonify_d.jpg", "b/x_input.jpg", "b/x_vtoonify_d.jpg",
                                    "clip_input.mp4", "clip_vtoonify_d.mp4"]
    assert [line for line in err.splitlines() if line.startswith("failed")] == [
        f"failed {photo_folder / 'broken.jpg'}: not a readable photo or video (damaged or another kind of file)",
        f"failed {photo_folder / 'cup.png'}: no face found in the image"]
    assert "3 done, 1 skipped, 2 failed" in err and "error: 2 of 6 input(s) failed" in err
    assert f"skipped {photo_folder / 'notes.txt'}: not a photo or video" in err
    # each output is byte for byte what a run on that one file writes
    single = tmp_path / "single"
    assert run(ckpt, single, "--content", str(photo_folder / "b" / "x.png"), "--scale_image", *PAD_ARGS) == 0
    assert (single / "x_vtoonify_d.jpg").read_bytes() == (out / "b" / "x_vtoonify_d.jpg").read_bytes()
    assert (out / "a" / "x_vtoonify_d.jpg").read_bytes() != (out / "b" / "x_vtoonify_d.jpg").read_bytes()

    # --skip_existing rewrites nothing; a deleted output is made again
    before = _mtimes(out)
    assert run(ckpt, out, "--content", str(photo_folder), "--scale_image", *PAD_ARGS, "--skip_existing") == 1
    assert _mtimes(out) == before
    assert "0 done, 4 skipped, 2 failed" in capsys.readouterr().err
    (out / "a" / "x_vtoonify_d.jpg").unlink()
    assert run(ckpt, out, "--content", str(photo_folder / "a"), str(photo_folder / "b"), "--scale_image", *PAD_ARGS,
               "--skip_existing") == 0
    assert (out / "a" / "x_vtoonify_d.jpg").is_file()
    after = _mtimes(out)
    assert after.keys() == before.keys() and after["a/x_vtoonify_d.jpg"] != before["a/x_vtoonify_d.jpg"]
    untouched = [k for k in before if not k.startswith("a/")]
    assert [after[k] for k in untouched] == [before[k] for k in untouched]
    assert "1 done, 1 skipped, 0 failed" in capsys.readouterr().err


def test_same_output_name_twice_is_one_failure(ckpt, tmp_path, astronaut_jpg, capsys):
    shutil.copy(astronaut_jpg, tmp_path / "x.png")
    shutil.copy(astronaut_jpg, tmp_path / "x.jpg")
    code = run(ckpt, tmp_path / "out", "--content", str(tmp_path / "x.png"), str(tmp_path / "x.jpg"),
               "--scale_image", *PAD_ARGS)
    assert code == 1
    err = capsys.readouterr().err
    assert f"failed {tmp_path / 'x.jpg'}: its outputs would overwrite those of {tmp_path / 'x.png'}" in err
    assert "1 done, 0 skipped, 1 failed" in err


def test_missing_content_fails_before_loading(ckpt, tmp_path, astronaut_jpg, capsys):
    assert run(ckpt, tmp_path / "out", "--content", str(astronaut_jpg), str(tmp_path / "nope.jpg")) == 1
    assert "content not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
