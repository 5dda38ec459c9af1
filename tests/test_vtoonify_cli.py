"""The ``vtoonify`` console command (vtoonify_cli.py): declared in pyproject.toml, one subcommand per script."""
from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path

import pytest
import tomllib
from stylize_helpers import PAD_ARGS, model_path, run

import vtoonify_cli

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["vtoonify"] == "vtoonify_cli:main"
    assert "vtoonify_cli" in project["tool"]["setuptools"]["py-modules"]


def _help(main, argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("command", sorted(vtoonify_cli.SUBCOMMANDS))
def test_each_subcommand_takes_its_scripts_flags(command):
    name = vtoonify_cli.SUBCOMMANDS[command][0]
    if not (ROOT / (name.replace(".", "/") + ".py")).is_file():
        pytest.skip(f"{name} is not in this tree (the branch predates it)")
    module = importlib.import_module(vtoonify_cli.SUBCOMMANDS[command][0])
    assert _help(lambda argv: vtoonify_cli.main([command, *argv]), ["--help"]) == _help(module.main, ["--help"])


def test_unknown_command(capsys):
    assert vtoonify_cli.main(["toonify"]) == 2
    assert "unknown command 'toonify'" in capsys.readouterr().err


def test_stylize_writes_what_style_transfer_writes(ckpt, astronaut_jpg, tmp_path):
    assert run(ckpt, tmp_path / "script", "--content", str(astronaut_jpg), "--scale_image", *PAD_ARGS) == 0
    argv = ["--ckpt", str(model_path(ckpt)), "--style_encoder_path", str(ckpt / "encoder.pt"), "--faceparsing_path",
            str(ckpt / "faceparsing.pth"), "--output_path", str(tmp_path / "cli"), "--cpu", "--no_progress",
            "--style_id", "1", "--scale_image", *PAD_ARGS]
    assert vtoonify_cli.main(["stylize", str(astronaut_jpg), *argv]) == 0  # content first, without --content
    names = sorted(p.name for p in (tmp_path / "script").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["astronaut_input.jpg", "astronaut_vtoonify_d.jpg"]
    for name in names:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "script" / name).read_bytes()
