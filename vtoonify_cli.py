"""The ``vtoonify`` command: one entry point with a subcommand per script, each taking exactly that script's flags.

    vtoonify stylize photos/ --style arcane             # = python style_transfer.py --content photos/ --style arcane
    vtoonify stylize --content clip.mp4 --video         # the script's own flags work unchanged
    vtoonify download --style arcane                    # = python -m hub.download --style arcane
    vtoonify demo                                       # = python app.py
    vtoonify train --help                               # = python train_vtoonify.py --help

The argument list after the subcommand goes to that script's ``main(argv)`` as it is, so ``vtoonify X ...`` and the
script behave the same, byte for byte. ``vtoonify stylize`` also takes the content paths first, without ``--content``
(``vtoonify stylize a.jpg b/ --style arcane``).
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "main"]

#: subcommand -> (module with ``main(argv)``, what it does)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "stylize": ("style_transfer", "toonify photos and videos (style_transfer.py)"),
    "train": ("train_vtoonify", "train a VToonify model (train_vtoonify.py)"),
    "train-style": ("train_style", "train a new style's teacher (train_style.py)"),
    "download": ("hub.download", "download released checkpoints (python -m hub.download)"),
    "demo": ("app", "the web demo (app.py)"),
    "figures": ("figures", "the paper's figures (figures.py)"),
    "evaluate": ("evaluate", "metrics of a model (evaluate.py)"),
    "smooth-parsing": ("smooth_parsing_map", "precompute smoothed parsing maps of a video (smooth_parsing_map.py)"),
    "export": ("pipeline.engines.export", "export VToonify to ONNX (python -m pipeline.engines.export)"),
}


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: vtoonify <command> [flags of that command]   (vtoonify <command> --help lists them)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def _stylize_argv(argv: list[str]) -> list[str]:
    """``vtoonify stylize a.jpg b/ --flags`` -> ``--content a.jpg b/ --flags`` (leading paths are the content)."""
    n = 0
    while n < len(argv) and not argv[n].startswith("-"):
        n += 1
    return ["--content", *argv[:n], *argv[n:]] if n else argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"vtoonify: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if command == "stylize":
        rest = _stylize_argv(rest)
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
