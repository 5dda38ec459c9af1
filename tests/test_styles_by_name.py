"""Released styles by name: style_transfer.py --style / --list_styles, VToonifyPipeline.from_pretrained and
hubconf.py (torch.hub), with the hub faked by a local folder of fill-rule checkpoints (no network)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from stylize_helpers import PAD, PAD_ARGS

import style_transfer
from hub import fetching, first_run

ROOT = Path(__file__).resolve().parents[1]


class LocalHub:
    """Serves ``models/<rel>`` from the fill-rule checkpoint folder: every style's model is the test style's."""

    def __init__(self, ckpt: Path):
        self.ckpt = ckpt
        self.filenames: list[str] = []

    def source(self, rel: str) -> Path:
        folder, _, name = rel.rpartition("/")
        if not folder:
            return self.ckpt / name
        if name == "exstyle_code.npy":
            return self.ckpt / "vtoonify_d_test" / name
        d_model = folder.startswith("vtoonify_d_")
        return self.ckpt / ("vtoonify_d_test/vtoonify_s_d.pt" if d_model else "vtoonify_t_test/vtoonify.pt")

    def __call__(self, repo_id, filename, *, revision=None, local_dir=None):
        self.filenames.append(filename)
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.source(filename.removeprefix("models/")), out)
        return str(out)


@pytest.fixture
def local_hub(ckpt, monkeypatch, tmp_path):
    hub = LocalHub(ckpt)
    monkeypatch.delenv("VTOONIFY_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(fetching, "hub_download", hub)
    monkeypatch.setattr(first_run, "remote_sizes", lambda rels, *a, **k: {})
    monkeypatch.chdir(tmp_path)
    return hub


def _models(*rels: str) -> list[str]:
    return sorted(f"models/{rel}" for rel in ("encoder.pt", "faceparsing.pth", *rels))


def test_style_by_name_is_fetched_on_first_use(local_hub, astronaut_jpg, capsys):
    argv = ["--content", str(astronaut_jpg), "--style", "arcane", "--cpu", "--no_progress", "--style_id", "1",
            "--scale_image", *PAD_ARGS, "--output_path", "out"]
    assert style_transfer.main(argv) == 0
    assert sorted(local_hub.filenames) == _models("vtoonify_d_arcane/vtoonify_s_d.pt", "vtoonify_d_arcane/exstyle_code.npy")
    assert Path("out/astronaut_vtoonify_d.jpg").is_file()
    local_hub.filenames.clear()
    assert style_transfer.main(["--list_styles"]) == 0  # sizes from the (faked) hub, local files marked
    table = capsys.readouterr().out.splitlines()
    arcane = next(line for line in table if line.startswith("arcane --backbone dualstylegan "))
    assert "vtoonify_d_arcane/vtoonify_s_d.pt" in arcane and arcane.endswith(" local") and " unknown " in arcane
    assert next(line for line in table if line.startswith("comic --backbone toonify")).endswith(" missing")
    assert local_hub.filenames == []


@pytest.mark.parametrize("extra, missing", [
    (["--style", "caricature", "--color_transfer"], "checkpoint/vtoonify_d_caricature/vtoonify_s_d_c.pt"),
    (["--style", "pixar", "--backbone", "toonify"], "checkpoint/vtoonify_t_pixar/vtoonify.pt"),
    (["--style", "pixar", "--ckpt", "mine/vtoonify_s_d.pt"], "mine/vtoonify_s_d.pt"),  # an explicit --ckpt wins
])
def test_style_picks_the_released_variant(extra, missing, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("a.jpg").write_bytes(b"")  # never read: the missing model stops the run first
    assert style_transfer.main(["--content", "a.jpg", "--video", "--cpu", "--no_download", *extra]) == 1
    assert f"Checkpoint not found: {missing}" in capsys.readouterr().err


def test_list_styles_offline_says_unknown(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(first_run, "remote_sizes", lambda rels, *a, **k: pytest.fail("asked the hub"))
    assert style_transfer.main(["--list_styles", "--no_download"]) == 0
    out = capsys.readouterr().out
    assert "(sizes unknown: the hub could not be reached)" in out and " local" not in out
    assert sum(line.endswith(" missing") for line in out.splitlines()) == 2 + 6 * 2 * 2 + 5  # helpers, D (+_c), T


def test_from_pretrained_fetches_what_is_missing(local_hub):
    from pipeline.stylize import VToonifyPipeline

    pipe = VToonifyPipeline.from_pretrained("pixar", backbone="toonify", device="cpu")
    assert sorted(local_hub.filenames) == _models("vtoonify_t_pixar/vtoonify.pt")
    assert pipe.backbone == "toonify" and pipe.device == torch.device("cpu")
    from skimage import data as skdata

    assert pipe.stylize_image(skdata.astronaut(), scale_image=True, padding=PAD).output.shape == (4 * 192, 4 * 192, 3)


def test_torch_hub_load_from_a_local_clone(local_hub):
    pipe = torch.hub.load(str(ROOT), "vtoonify", style="comic", color_transfer=True, device="cpu", source="local")
    assert sorted(local_hub.filenames) == _models("vtoonify_d_comic/vtoonify_s_d_c.pt", "vtoonify_d_comic/exstyle_code.npy")
    assert type(pipe).__name__ == "VToonifyPipeline" and pipe.backbone == "dualstylegan"
    assert pipe.exstyle(1) is not None
