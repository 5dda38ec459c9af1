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
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from model.bisenet.model import BiSeNet  # noqa: E402
from model.encoder.encoders.psp_encoders import GradualStyleEncoder  # noqa: E402
from model.fill import fill_module  # noqa: E402
from model.vtoonify import VToonify  # noqa: E402
from pipeline.styles import save_exstyle_codes  # noqa: E402

TABLES = ROOT / "tests" / "data" / "golden"


def write_fill_style_encoder(path: Path) -> Path:
    """A released-size pSp ``encoder.pt`` (opts, state_dict, latent_avg) filled by the golden fill table."""
    with torch.device("meta"):
        encoder = GradualStyleEncoder(50, "ir_se")
    encoder = fill_module(encoder.to_empty(device="cpu"), TABLES / "fill_psp_encoder.tsv")
    torch.save({"opts": {"input_nc": 3, "output_size": 1024}, "latent_avg": torch.zeros(18, 512),
                "state_dict": {"encoder." + k: v for k, v in encoder.state_dict().items()}}, path)
    return path


def write_fill_face_parser(path: Path) -> Path:
    """A BiSeNet ``faceparsing.pth`` filled by the golden fill table."""
    torch.save(fill_module(BiSeNet(19), TABLES / "fill_bisenet.tsv").state_dict(), path)
    return path


def write_fill_checkpoints(out: Path, n_styles: int = 8) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for backbone, folder, name in (("dualstylegan", "vtoonify_d_fill", "vtoonify_s_d.pt"), ("toonify", "vtoonify_t_fill", "vtoonify.pt")):
        (out / folder).mkdir(exist_ok=True)
        model = fill_module(VToonify(backbone=backbone), TABLES / f"fill_vtoonify_{backbone}.tsv")
        torch.save({"g_ema": model.state_dict()}, out / folder / name)
        del model
    rng = np.random.default_rng(0)
    save_exstyle_codes(out / "vtoonify_d_fill" / "exstyle_code.npy",
                       {f"style{i:03d}.jpg": rng.standard_normal((1, 18, 512)).astype(np.float32) for i in range(n_styles)})
    write_fill_style_encoder(out / "encoder.pt")
    write_fill_face_parser(out / "faceparsing.pth")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--styles", type=int, default=8, help="number of random exemplar codes")
    args = ap.parse_args()
    print(write_fill_checkpoints(args.out, args.styles))


if __name__ == "__main__":
    main()
