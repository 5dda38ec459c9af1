"""Checkpoint downloader (pipeline/download.py), fully offline: the Hugging Face download is faked."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hub import download
from hub.download import (
    DownloadError,
    d_checkpoint_name,
    fetch,
    files_for,
    guess_style_from_path,
    main,
    missing_file_message,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MANUAL_URL = "https://huggingface.co/PKUWilliamYang/VToonify/tree/main/models"


class FakeHub:
    """Stands in for ``hf_hub_download``: writes ``<local_dir>/<filename>`` like the real one and records calls."""

    def __init__(self, fail_on: str | None = None, error: Exception | None = None):
        self.calls: list[dict] = []
        self.fail_on = fail_on
        self.error = error or OSError("network is unreachable")

    def __call__(self, repo_id, filename, *, revision=None, local_dir=None):
        self.calls.append({"repo_id": repo_id, "filename": filename, "revision": revision, "local_dir": local_dir})
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)  # hub's metadata folder
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        if filename == self.fail_on:
            out.write_bytes(b"partial")  # a download that dies half-way
            raise self.error
        out.write_bytes(f"{repo_id}@{revision}:{filename}".encode())
        return str(out)

    @property
    def filenames(self) -> list[str]:
        return [c["filename"] for c in self.calls]


def leftovers(root: Path) -> list[Path]:
    """Hidden files or folders (staging folders, hub metadata) and half-written files under ``root``."""
    return [p for p in root.rglob("*") if p.name.startswith(".") or (p.is_file() and "partial" in p.read_text())]


# --------------------------------------------------------------------------------------------------
# files_for / d_checkpoint_name


def test_files_for_d_default():
    assert files_for() == [
        "encoder.pt",
        "faceparsing.pth",
        "vtoonify_d_cartoon/vtoonify_s_d.pt",
        "vtoonify_d_cartoon/exstyle_code.npy",
    ]


def test_files_for_d_color_transfer():
    assert files_for("dualstylegan", "arcane", color_transfer=True)[2:] == [
        "vtoonify_d_arcane/vtoonify_s_d_c.pt",
        "vtoonify_d_arcane/exstyle_code.npy",
    ]


def test_files_for_d_fixed_style():
    files = files_for("dualstylegan", "cartoon", style_id=26, style_degree=0.5)
    assert files[2:] == ["vtoonify_d_cartoon/vtoonify_s026_d0.5.pt", "vtoonify_d_cartoon/exstyle_code.npy"]


@pytest.mark.parametrize(
    "style_id, degree, color, name",
    [
        (None, None, False, "vtoonify_s_d.pt"),
        (None, None, True, "vtoonify_s_d_c.pt"),
        (26, 0.5, False, "vtoonify_s026_d0.5.pt"),
        (0, 0.5, False, "vtoonify_s000_d0.5.pt"),
        (54, None, True, "vtoonify_s054_d_c.pt"),
        (None, 1.0, False, "vtoonify_s_d1.0.pt"),
    ],
)
def test_d_checkpoint_name(style_id, degree, color, name):
    assert d_checkpoint_name(style_id, degree, color) == name


@pytest.mark.parametrize("kwargs", [{"style_id": -1}, {"style_id": 1000}, {"style_degree": 1.5}, {"style_degree": -0.1}])
def test_d_checkpoint_name_rejects_out_of_range(kwargs):
    with pytest.raises(ValueError):
        d_checkpoint_name(**kwargs)


def test_files_for_t_ignores_style_options():
    expected = ["encoder.pt", "faceparsing.pth", "vtoonify_t_pixar/vtoonify.pt"]
    assert files_for("toonify", "pixar") == expected
    assert files_for("toonify", "pixar", color_transfer=True, style_id=3, style_degree=0.5) == expected


def test_files_for_training_d():
    assert files_for("dualstylegan", "comic", training=True) == files_for("dualstylegan", "comic") + [
        "directions.npy",
        "comic/generator.pt",
        "comic/refined_exstyle_code.npy",
    ]


def test_files_for_training_t():
    assert files_for("toonify", "cartoon", training=True) == files_for("toonify", "cartoon") + [
        "directions.npy",
        "stylegan2-ffhq-config-f.pt",
        "cartoon/finetune-000600.pt",
    ]


def test_files_for_bad_style_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown style 'anime'") as info:
        files_for("dualstylegan", "anime")
    assert "cartoon, caricature, arcane, comic, pixar, illustration" in str(info.value)
    with pytest.raises(ValueError, match="valid styles: cartoon, caricature, arcane, comic, pixar$"):
        files_for("toonify", "illustration")  # no VToonify-T illustration model
    with pytest.raises(ValueError, match="valid backbones: dualstylegan, toonify"):
        files_for("stylegan", "cartoon")


# --------------------------------------------------------------------------------------------------
# fetch


def test_fetch_places_files_at_dest_rel(tmp_path):
    hub = FakeHub()
    rels = files_for("dualstylegan", "cartoon", color_transfer=True)
    paths = fetch(rels, dest=tmp_path, revision="v1", progress=False, downloader=hub)
    assert paths == [tmp_path / rel for rel in rels]
    assert hub.filenames == ["models/" + rel for rel in rels]
    assert {c["repo_id"] for c in hub.calls} == {"PKUWilliamYang/VToonify"}
    assert {c["revision"] for c in hub.calls} == {"v1"}
    for rel, path in zip(rels, paths):
        assert path.read_text() == f"PKUWilliamYang/VToonify@v1:models/{rel}"
    assert not (tmp_path / "models").exists()  # hub's local_dir layout does not leak into dest
    assert leftovers(tmp_path) == []  # staging folders and hub metadata are cleaned up


def test_fetch_skips_present_files_and_force_refetches(tmp_path):
    rels = files_for()
    (tmp_path / "encoder.pt").write_bytes(b"mine")
    hub = FakeHub()
    fetch(rels, dest=tmp_path, progress=False, downloader=hub)
    assert hub.filenames == ["models/" + rel for rel in rels[1:]]
    assert (tmp_path / "encoder.pt").read_bytes() == b"mine"

    hub = FakeHub()
    fetch(rels, dest=tmp_path, progress=False, downloader=hub)
    assert hub.calls == []

    hub = FakeHub()
    fetch(rels, dest=tmp_path, force=True, progress=False, downloader=hub)
    assert hub.filenames == ["models/" + rel for rel in rels]
    assert (tmp_path / "encoder.pt").read_text() == "PKUWilliamYang/VToonify@None:models/encoder.pt"


def test_fetch_tells_each_file(tmp_path):
    """``on_file`` hears of each file fetched (not of those present), and a failure leaves no new folder (two callers
    at once: tests/test_app_released.py)."""
    (tmp_path / "encoder.pt").write_bytes(b"mine")
    rels = files_for("toonify", "pixar")
    told = []
    fetch(rels, dest=tmp_path, progress=False, downloader=FakeHub(), on_file=lambda *a: told.append(a))
    assert told == [(1, 3, "faceparsing.pth"), (2, 3, "vtoonify_t_pixar/vtoonify.pt")]

    rel = "vtoonify_t_comic/vtoonify.pt"
    with pytest.raises(DownloadError):
        fetch([rel], dest=tmp_path, progress=False, downloader=FakeHub(fail_on=f"models/{rel}"))
    assert not (tmp_path / "vtoonify_t_comic").exists()
    with pytest.raises(DownloadError):  # nor a checkpoint folder that did not exist before
        fetch([rel], dest=tmp_path / "new" / "ckpt", progress=False, downloader=FakeHub(fail_on=f"models/{rel}"))
    assert not (tmp_path / "new").exists()


def test_fetch_reports_progress_on_stderr(tmp_path, capsys):
    (tmp_path / "encoder.pt").write_bytes(b"mine")
    fetch(["encoder.pt", "faceparsing.pth"], dest=tmp_path, downloader=FakeHub())
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "present" in captured.err and "encoder.pt" in captured.err
    assert "models/faceparsing.pth" in captured.err


def test_fetch_failure_is_download_error_without_partial_file(tmp_path):
    rels = files_for("dualstylegan", "cartoon", style_id=26, style_degree=0.5)
    failing = "vtoonify_d_cartoon/vtoonify_s026_d0.5.pt"
    hub = FakeHub(fail_on="models/" + failing)
    with pytest.raises(DownloadError) as info:
        fetch(rels, dest=tmp_path, progress=False, downloader=hub)
    err = info.value
    message = str(err)
    assert "models/" + failing in message
    assert "network is unreachable" in message
    assert err.relpath == failing
    assert err.command == (
        f"python -m hub.download --backbone dualstylegan --style cartoon --style_id 26 --style_degree 0.5 "
        f"--dest {shlex.quote(str(tmp_path))}"
    )
    assert err.command in message
    assert MANUAL_URL in message
    assert isinstance(err, RuntimeError) and isinstance(err.__cause__, OSError)
    # files before the failure are in place, the failed one is absent and nothing half-written remains
    assert (tmp_path / "encoder.pt").is_file() and (tmp_path / "faceparsing.pth").is_file()
    assert not (tmp_path / failing).exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "config, failing, options",
    [
        ({"style": "arcane", "color_transfer": True}, "encoder.pt",
         "--backbone dualstylegan --style arcane --color_transfer"),
        ({"style": "comic", "training": True}, "vtoonify_d_comic/vtoonify_s_d.pt",
         "--backbone dualstylegan --style comic --training"),
        ({"backbone": "toonify", "style": "pixar", "training": True}, "directions.npy",
         "--backbone toonify --style pixar --training"),
    ],
)
def test_fetch_retry_command_repeats_the_request(tmp_path, config, failing, options):
    """A shared file that fails is retried with the options of the whole request, not a default style."""
    with pytest.raises(DownloadError) as info:
        fetch(files_for(**config), dest=tmp_path, progress=False, downloader=FakeHub(fail_on="models/" + failing))
    assert info.value.command == f"python -m hub.download {options} --dest {shlex.quote(str(tmp_path))}"


def test_fetch_retry_command_for_a_mixed_request_still_fetches_the_file(tmp_path):
    request = ["vtoonify_d_illustration/vtoonify_s_d.pt", "stylegan2-ffhq-config-f.pt"]  # no single command asks for both
    with pytest.raises(DownloadError) as info:
        fetch(request, dest=tmp_path, progress=False, downloader=FakeHub(fail_on="models/stylegan2-ffhq-config-f.pt"))
    assert "--backbone toonify --style cartoon --training" in info.value.command


def test_fetch_failure_keeps_previous_version_on_force(tmp_path):
    (tmp_path / "encoder.pt").write_bytes(b"old but complete")
    hub = FakeHub(fail_on="models/encoder.pt")
    with pytest.raises(DownloadError, match="models/encoder.pt"):
        fetch(["encoder.pt"], dest=tmp_path, force=True, progress=False, downloader=hub)
    assert (tmp_path / "encoder.pt").read_bytes() == b"old but complete"
    assert leftovers(tmp_path) == []


def test_fetch_converts_hub_errors(tmp_path):
    errors = pytest.importorskip("huggingface_hub.errors")
    for error in (errors.LocalEntryNotFoundError("not in cache and offline"), errors.OfflineModeIsEnabled("offline")):
        with pytest.raises(DownloadError, match="models/faceparsing.pth"):
            fetch(["faceparsing.pth"], dest=tmp_path, progress=False, downloader=FakeHub("models/faceparsing.pth", error))


def test_fetch_retry_command_mentions_non_default_repo_and_revision(tmp_path):
    hub = FakeHub(fail_on="models/vtoonify_t_arcane/vtoonify.pt")
    with pytest.raises(DownloadError) as info:
        fetch(["vtoonify_t_arcane/vtoonify.pt"], dest=tmp_path, repo_id="me/mirror", revision="dev",
              progress=False, downloader=hub)
    assert info.value.command.endswith("--backbone toonify --style arcane "
                                       f"--dest {shlex.quote(str(tmp_path))} --repo me/mirror --revision dev")
    assert "https://huggingface.co/me/mirror/tree/dev/models" in str(info.value)


def test_fetch_unknown_file_failure_has_manual_hint_only(tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch(["extra/thing.bin"], dest=tmp_path, progress=False, downloader=FakeHub("models/extra/thing.bin"))
    assert info.value.command is None
    assert "models/extra/thing.bin" in str(info.value) and MANUAL_URL in str(info.value)


def test_fetch_copies_files_the_downloader_keeps(tmp_path):
    """A downloader may return a link into its cache (older huggingface_hub): the cache must stay intact."""
    cache = tmp_path / "cache"
    cache.mkdir()
    blob = cache / "blob"
    blob.write_bytes(b"weights")

    def linking_downloader(repo_id, filename, *, revision=None, local_dir=None):
        link = Path(local_dir) / filename
        link.parent.mkdir(parents=True)
        link.symlink_to(blob)
        return link

    dest = tmp_path / "checkpoint"
    (path,) = fetch(["encoder.pt"], dest=dest, progress=False, downloader=linking_downloader)
    assert not path.is_symlink() and path.read_bytes() == b"weights"
    assert blob.read_bytes() == b"weights"


@pytest.mark.parametrize("rel", ["/etc/passwd", "../outside.pt", ""])
def test_fetch_rejects_paths_outside_dest(tmp_path, rel):
    with pytest.raises(ValueError):
        fetch([rel], dest=tmp_path, progress=False, downloader=FakeHub())


def test_fetch_uses_hf_hub_download_by_default(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    fetch(["faceparsing.pth"], dest=tmp_path, progress=False)
    assert hub.filenames == ["models/faceparsing.pth"]
    assert (tmp_path / "faceparsing.pth").is_file()


def test_fetch_without_huggingface_hub_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        fetch(["encoder.pt"], dest=tmp_path, progress=False)


# --------------------------------------------------------------------------------------------------
# command line


def test_cli_list_prints_plan_and_downloads_nothing(tmp_path, capsys, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("--list must not download")

    monkeypatch.setattr(download, "_hub_download", no_download)
    (tmp_path / "encoder.pt").write_bytes(b"x")
    assert main(["--backbone", "toonify", "--style", "comic", "--dest", str(tmp_path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"present  {tmp_path / 'encoder.pt'}",
        f"fetch    {tmp_path / 'faceparsing.pth'}",
        f"fetch    {tmp_path / 'vtoonify_t_comic' / 'vtoonify.pt'}",
    ]


def test_cli_downloads(tmp_path, capsys, monkeypatch):
    hub = FakeHub()
    monkeypatch.setattr(download, "_hub_download", hub)
    argv = ["--style", "pixar", "--style_id", "52", "--style_degree", "0.5", "--dest", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "vtoonify_d_pixar" / "vtoonify_s052_d0.5.pt").is_file()
    assert hub.filenames[2] == "models/vtoonify_d_pixar/vtoonify_s052_d0.5.pt"
    assert "4 file(s) ready" in capsys.readouterr().out


def test_cli_failure_exits_1_with_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(download, "_hub_download", FakeHub(fail_on="models/encoder.pt"))
    assert main(["--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Could not download models/encoder.pt" in err
    assert "python -m hub.download --backbone dualstylegan --style cartoon" in err
    assert "Traceback" not in err


def test_cli_bad_style_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--backbone", "toonify", "--style", "illustration", "--list"])
    assert info.value.code == 2
    assert "valid styles: cartoon, caricature, arcane, comic, pixar" in capsys.readouterr().err


def run_module(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """``python -m hub.download ARGS`` in a subprocess, offline (HF_HUB_OFFLINE) with an empty hub cache."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "hub.download", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_module_entry_point_exit_codes(tmp_path):
    listed = run_module("--list", "--dest", "ckpt", cwd=tmp_path, home=tmp_path / "hf")
    assert listed.returncode == 0, listed.stderr
    assert "vtoonify_d_cartoon" in listed.stdout

    # the real downloader (or its absence) offline: a clean message and status 1, nothing written
    failed = run_module("--dest", "ckpt", cwd=tmp_path, home=tmp_path / "hf")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert "pip install huggingface_hub" in failed.stderr or "Could not download models/encoder.pt" in failed.stderr
    assert [p for p in (tmp_path / "ckpt").rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------------------------------
# guess_style_from_path / missing_file_message


@pytest.mark.parametrize(
    "path, expected",
    [
        ("checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt", ("dualstylegan", "cartoon")),
        ("./checkpoint/vtoonify_d_illustration/vtoonify_s054_d_c.pt", ("dualstylegan", "illustration")),
        ("/abs/vtoonify_d_arcane/exstyle_code.npy", ("dualstylegan", "arcane")),
        ("checkpoint/vtoonify_t_pixar/vtoonify.pt", ("toonify", "pixar")),
        ("checkpoint/vtoonify_d_comic/my_finetune_00500.pt", ("dualstylegan", "comic")),
        ("checkpoint/caricature/generator.pt", ("dualstylegan", "caricature")),
        ("checkpoint/cartoon/finetune-000600.pt", ("toonify", "cartoon")),
        ("checkpoint/encoder.pt", None),
        ("checkpoint/vtoonify_t_illustration/vtoonify.pt", None),  # no such released style
        ("checkpoint/vtoonify_d_mystyle/vtoonify_s_d.pt", None),
        ("model.pt", None),
    ],
)
def test_guess_style_from_path(path, expected):
    assert guess_style_from_path(path) == expected


def test_missing_message_for_released_model():
    message = missing_file_message("./checkpoint/vtoonify_d_cartoon/vtoonify_s_d_c.pt")
    assert "checkpoint/vtoonify_d_cartoon/vtoonify_s_d_c.pt" in message
    assert "python -m hub.download --backbone dualstylegan --style cartoon --color_transfer\n" in message
    assert MANUAL_URL in message


def test_missing_message_for_shared_file_uses_run_options():
    message = missing_file_message("checkpoint/encoder.pt", "toonify", "arcane")
    assert "python -m hub.download --backbone toonify --style arcane\n" in message


def test_missing_message_path_wins_over_run_options_and_keeps_dest(tmp_path):
    path = tmp_path / "weights" / "vtoonify_t_comic" / "vtoonify.pt"
    message = missing_file_message(path, "dualstylegan", "cartoon")
    dest = shlex.quote(str(tmp_path / "weights"))
    assert f"python -m hub.download --backbone toonify --style comic --dest {dest}\n" in message


def test_missing_message_teacher_file():
    message = missing_file_message("checkpoint/stylegan2-ffhq-config-f.pt", "dualstylegan", "illustration")
    assert "--backbone toonify --style cartoon --training" in message


def test_missing_message_for_unreleased_file():
    message = missing_file_message("checkpoint/vtoonify_d_cartoon/vtoonify_s_d_c_01000.pt")
    assert "not one of the released" in message
    assert "python -m hub.download --backbone dualstylegan --style cartoon" in message
    assert MANUAL_URL in message
    assert "download --" not in missing_file_message("elsewhere/custom.pt")


def test_every_released_file_maps_back_to_a_command_that_fetches_it():
    """For each file of each configuration, the suggested command lists that file."""
    configs = [{"backbone": b, "style": s} for b, styles in download.STYLES.items() for s in styles]
    configs.append({"backbone": "dualstylegan", "style": "cartoon", "color_transfer": True,
                    "style_id": 26, "style_degree": 0.5})
    for config in configs:
        for rel in files_for(**config, training=True):
            message = missing_file_message(os.path.join("checkpoint", rel))
            command = next(line.strip() for line in message.splitlines() if line.strip().startswith("python -m"))
            args = download._parser().parse_args(shlex.split(command)[3:])
            assert rel in files_for(args.backbone, args.style, args.color_transfer, args.style_id,
                                    args.style_degree, args.training), (rel, command)
