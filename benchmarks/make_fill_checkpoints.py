"""Write released-size checkpoints filled with deterministic "fill rule" weights (see ``model/fill.py``).

    python benchmarks/make_fill_checkpoints.py --out /tmp/fill_ckpt

creates, in the released layout::

    /tmp/fill_ckpt/vtoonify_d_fill/vtoonify_s_d.pt      VToonify-D  {'g_ema': ...}
    /tmp/fill_ckpt/vtoonify_d_fill/exstyle_code.npy     8 random exemplar codes
    /tmp/fill_ckpt/vtoonify_t_fill/vtoonify.pt          VToonify-T
    /tmp/fill_ckpt/encoder.pt                           pSp encoder (opts, state_dict, latent_avg)
    /tmp/fill_ckpt/faceparsing.pth                      BiSeNet

Their outputs are noise, but they cost exactly what the released models cost, so they serve benchmarks
and end-to-end smoke runs without downloading anything. About 2.3 GB on disk.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_output
from model.fill import fill_module, write_fill_face_parser, write_fill_style_encoder
from model.vtoonify import VToonify
from pipeline.styles import save_exstyle_codes

TABLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"
# the released-size helper networks: file name, writer and fill table of each
HELPERS = {"encoder": ("encoder.pt", write_fill_style_encoder, "fill_psp_encoder.tsv"),
           "faceparsing": ("faceparsing.pth", write_fill_face_parser, "fill_bisenet.tsv")}


def ensure_fill_helper(name: str, path: Path | None = None, folder: Path | None = None) -> Path:
    """The fill-rule pSp encoder (``name='encoder'``, ~1 GB) or BiSeNet (``'faceparsing'``) at ``path`` (default:
    its released file name in ``folder``), written atomically unless the file is there already."""
    file_name, write, table = HELPERS[name]
    path = Path(path) if path is not None else Path(folder) / file_name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            write(tmp, TABLES / table)
    return path


def write_fill_checkpoints(out: Path, n_styles: int = 8) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    released = (("dualstylegan", "vtoonify_d_fill", "vtoonify_s_d.pt"), ("toonify", "vtoonify_t_fill", "vtoonify.pt"))
    for backbone, folder, name in released:
        (out / folder).mkdir(exist_ok=True)
        model = fill_module(VToonify(backbone=backbone), TABLES / f"fill_vtoonify_{backbone}.tsv")
        torch.save({"g_ema": model.state_dict()}, out / folder / name)
        del model
    rng = np.random.default_rng(0)
    save_exstyle_codes(out / "vtoonify_d_fill" / "exstyle_code.npy",
                       {f"style{i:03d}.jpg": rng.standard_normal((1, 18, 512)).astype(np.float32) for i in range(n_styles)})
    for name in HELPERS:
        ensure_fill_helper(name, folder=out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--styles", type=int, default=8, help="number of random exemplar codes")
    args = ap.parse_args()
    print(write_fill_checkpoints(args.out, args.styles))


if __name__ == "__main__":
    main()
