"""The web demo's released styles (demo/released.py): listed beside the local models with a download marker, fetched
into the checkpoint folder when picked (through demo.handlers, no browser), and hidden by --no_download. The hub
is a local folder of fill-rule checkpoints: nothing is downloaded."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

import app
from conftest import make_pipeline
from demo import handlers
from demo.released import with_released_styles
from hub import fetching, first_run

LOCAL_T = "VToonify-T test (vtoonify.pt)"
COMIC_C = "VToonify-D comic (vtoonify_s_d_c.pt)"
COMIC_FILES = ["vtoonify_d_comic/vtoonify_s_d_c.pt", "vtoonify_d_comic/exstyle_code.npy"]
N_RELEASED = 6 * 2 + 5  # VToonify-D styles with and without colour transfer, VToonify-T styles


class LocalHub:
    """Stands in for ``hf_hub_download``: every style's files are the fill-rule test model's (from ``ckpt``).

    ``fail``: raise OSError for every file after writing half of it; ``hold``: the first call waits for it."""

    def __init__(self, ckpt: Path, fail: bool = False, hold: threading.Event | None = None):
        self.ckpt, self.fail, self.hold = ckpt, fail, hold
        self.filenames: list[str] = []
        self.entered = threading.Event()

    def __call__(self, repo_id, filename, *, revision=None, local_dir=None):
        self.filenames.append(filename)
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(60)
        folder, _, name = filename.removeprefix("models/").rpartition("/")
        source = self.ckpt / ("vtoonify_d_test" if folder.startswith("vtoonify_d_") else "vtoonify_t_test") / name
        if name.startswith("vtoonify_s_d"):
            source = source.with_name("vtoonify_s_d.pt")
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        if self.fail:
            out.write_bytes(source.read_bytes()[:100])  # a download that dies half-way
            raise OSError("network is unreachable")
        shutil.copy(source, out)
        return str(out)


@pytest.fixture
def root(ckpt, tmp_path) -> Path:
    """A checkpoint folder with the helpers and one local model (the fill-rule VToonify-T), nothing released."""
    root = tmp_path / "checkpoint"
    (root / "vtoonify_t_test").mkdir(parents=True)
    (root / "vtoonify_t_test" / "vtoonify.pt").symlink_to(ckpt / "vtoonify_t_test" / "vtoonify.pt")
    for name in ("encoder.pt", "faceparsing.pth"):
        (root / name).symlink_to(ckpt / name)
    return root


@pytest.fixture
def online(monkeypatch):
    """Downloads on (the suite turns them off), the hub's sizes known: every model 1 GB, every exstyle file 0.2 GB."""
    monkeypatch.delenv("VTOONIFY_NO_DOWNLOAD", raising=False)
    sizes = {"exstyle_code.npy": 200_000_000, "vtoonify_s_d.pt": 1_000_000_000, "vtoonify_s_d_c.pt": 1_000_000_000,
             "vtoonify.pt": 1_000_000_000}
    monkeypatch.setattr(fetching, "remote_sizes", lambda rels, *a, **k: {r: sizes[r.split("/")[-1]] for r in rels})
    monkeypatch.setattr(first_run, "remote_sizes", lambda rels, *a, **k: {})


def make_state(root: Path) -> app.AppState:
    config = app.AppConfig.from_checkpoint_dir(root, device="cpu")
    return app.AppState(with_released_styles(config, root))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink())


def test_released_styles_are_listed_with_their_size(root, online, monkeypatch):
    state = make_state(root)
    try:
        choices = state.model_choices(wait=60)
        assert choices[0] == (LOCAL_T, LOCAL_T)  # the local model first, as it was
        assert len(choices) == 1 + N_RELEASED
        shown = dict((label, name) for name, label in choices)
        assert shown["VToonify-D cartoon (vtoonify_s_d.pt)"] == "VToonify-D cartoon (vtoonify_s_d.pt) (download, 1.2 GB)"
        assert shown[COMIC_C] == f"{COMIC_C} (download, 1.2 GB)"
        assert shown["VToonify-T pixar (vtoonify.pt)"] == "VToonify-T pixar (vtoonify.pt) (download, 1.0 GB)"
        assert state.config.labels == [LOCAL_T]  # the default and the files checked at start-up: local ones only
        assert state.config.missing_files() == []
    finally:
        state.close()

    # offline: the sizes are unknown; a released style already here is a local model, not listed again
    monkeypatch.setattr(fetching, "remote_sizes", lambda rels, *a, **k: {})
    (root / "vtoonify_t_pixar").mkdir()
    shutil.copy(root / "vtoonify_t_test" / "vtoonify.pt", root / "vtoonify_t_pixar" / "vtoonify.pt")
    state = make_state(root)
    try:
        choices = state.model_choices(wait=60)
        assert choices[:2] == [("VToonify-T pixar (vtoonify.pt)",) * 2, (LOCAL_T, LOCAL_T)]
        assert len(choices) == 2 + N_RELEASED - 1
        assert (f"{COMIC_C} (download, size unknown)", COMIC_C) in choices
    finally:
        state.close()


def test_picking_a_released_style_fetches_it_then_it_stylises(root, online, ckpt, monkeypatch):
    hub = LocalHub(ckpt)
    monkeypatch.setattr(fetching, "hub_download", hub)
    state = make_state(root)
    try:
        progress = []
        fetched, message = handlers.fetch_model(state, COMIC_C, lambda f, desc=None: progress.append((f, desc)))
        assert (fetched, message) == (True, None)
        assert hub.filenames == [f"models/{rel}" for rel in COMIC_FILES]
        assert progress == [(0.0, f"Downloading {COMIC_FILES[0]} (1 of 2)"), (0.5, f"Downloading {COMIC_FILES[1]} (2 of 2)")]
        assert all((root / rel).is_file() for rel in COMIC_FILES)
        assert (COMIC_C, COMIC_C) in state.model_choices()  # the marker is gone
        assert handlers.fetch_model(state, COMIC_C) == (False, None) and len(hub.filenames) == 2  # not fetched twice
        assert handlers.fetch_model(state, LOCAL_T) == (False, None)  # a local model: nothing to fetch

        # then it is a model like the local ones: it stylises as the file served would, and loads as a local one next time
        assert state.model_info(COMIC_C).color_transfer_model
        rgb = skdata.astronaut()
        out, message = app.toonify_image(state, rgb, COMIC_C, style_id=1, color_transfer=True)
        assert out is not None and out.shape == (1408, 1600, 3), message
        expected = make_pipeline(ckpt).stylize_image(rgb, style_id=1, color_transfer=True, scale_image=True).output
        assert np.array_equal(out, expected)
        assert COMIC_C in [m.label for m in app.discover_models(root)]
    finally:
        state.close()


def test_two_picks_at_once_download_each_file_once(root, online, ckpt, monkeypatch):
    hub = LocalHub(ckpt, hold=threading.Event())
    monkeypatch.setattr(fetching, "hub_download", hub)
    state = make_state(root)
    results = []
    pick = threading.Thread(target=lambda: results.append(handlers.fetch_model(state, COMIC_C)))
    other = threading.Thread(target=lambda: results.append(handlers.fetch_model(state, COMIC_C)))
    try:
        pick.start()
        assert hub.entered.wait(60)  # the first pick is downloading ...
        other.start()  # ... when the second comes
        time.sleep(0.5)  # room for the second to (wrongly) start its own download
        hub.hold.set()
        pick.join(60)
        other.join(60)
        assert hub.filenames == [f"models/{rel}" for rel in COMIC_FILES]
        assert sorted(results) == [(False, None), (True, None)] or results == [(True, None)] * 2
        assert files_under(root / "vtoonify_d_comic") == ["exstyle_code.npy", "vtoonify_s_d_c.pt"]  # nothing partial
    finally:
        hub.hold.set()
        state.close()


def test_a_failing_fetch_is_one_line_and_leaves_no_file(root, online, ckpt, monkeypatch):
    before = files_under(root)
    monkeypatch.setattr(fetching, "hub_download", LocalHub(ckpt, fail=True))
    state = make_state(root)
    try:
        fetched, message = handlers.fetch_model(state, COMIC_C, lambda *a, **k: None)
        assert not fetched and message == (f"Error: Could not download models/{COMIC_FILES[0]} from "
                                           "PKUWilliamYang/VToonify (OSError: network is unreachable).")
        assert files_under(root) == before and not (root / "vtoonify_d_comic").exists()
        # the page stays usable: stylising with that model says the same, another model works
        out, again = app.toonify_image(state, skdata.astronaut(), COMIC_C)
        assert out is None and again == message
        assert state.model_info(LOCAL_T).backbone == "toonify"

        monkeypatch.setenv("VTOONIFY_NO_DOWNLOAD", "1")  # downloads turned off after start-up
        fetched, message = handlers.fetch_model(state, COMIC_C)
        assert not fetched and message == f"Error: Checkpoint not found: {root / COMIC_FILES[0]}"
        assert files_under(root) == before
    finally:
        state.close()


class Served:
    """Stands in for the page: records the configuration ``app.main`` would serve."""

    def __init__(self, monkeypatch):
        self.config = None
        monkeypatch.setattr(app, "build_app", self.build)

    def build(self, config, state):
        self.config = config
        state.close()
        return self

    def queue(self):
        return self

    def launch(self, **kwargs):
        pass


@pytest.mark.parametrize("off", [None, "flag", "env"])
def test_no_download_hides_the_released_styles(root, online, monkeypatch, off):
    served = Served(monkeypatch)
    if off == "env":
        monkeypatch.setenv("VTOONIFY_NO_DOWNLOAD", "1")
    argv = ["--ckpt_dir", str(root), "--device", "cpu"] + (["--no_download"] if off == "flag" else [])
    assert app.main(argv) == 0
    assert served.config.labels == [LOCAL_T]
    assert len(served.config.downloadable) == (0 if off else N_RELEASED)


def test_the_page_lists_the_released_styles(root, online):
    state = make_state(root)
    try:
        page = app.build_app(state.config, state)
        (dropdown,) = [block for block in page.blocks.values() if block.elem_id == "model"]
        assert dropdown.value == LOCAL_T
        assert (f"{COMIC_C} (download, 1.2 GB)", COMIC_C) in dropdown.choices
    finally:
        state.close()
