"""Train VToonify: encoder pre-training (``--pretrain``) and distillation, for both backbones.

One script replaces the original's ``train_vtoonify_d.py`` / ``train_vtoonify_t.py`` (same flags, same
defaults, same algorithm; the code is in the ``training/`` package). Training data is synthesised by
StyleGAN itself; nothing is read from disk but the teacher and helper networks.

    # stage 1: the encoder regresses the frozen generator's 32x32 features
    python train_vtoonify.py --backbone dualstylegan --iter 30000 --batch 1 --pretrain
    # stage 2: adversarial + MSE + LPIPS + mask + temporal distillation from DualStyleGAN
    python train_vtoonify.py --backbone dualstylegan --iter 2000 --batch 4 --fix_color
    # several GPUs / nodes
    torchrun --nproc_per_node 8 train_vtoonify.py --backbone toonify --iter 2000 --batch 4
    # a new style, warm-started from a released model of the same architecture (no stage 1)
    python train_vtoonify.py --backbone toonify --finetunegan_path checkpoint/mystyle/finetune-000600.pt \
        --name vtoonify_t_mystyle --init_from checkpoint/vtoonify_t_cartoon/vtoonify.pt

Additions: ``--seed``, a real ``--resume`` (generator, discriminator, EMA, optimisers, iteration and RNG
states: a killed run continues bit for bit; other settings are refused), ``--init_from``, ``--device``,
``--amp``, explicit LPIPS/VGG weight files, teacher sizes inferred from the files, checks of every input
before any work (every numeric flag has its range in ``common.options.RANGES``), a stop with one line and
exit status 1 at the first NaN or infinite loss or weight (naming the iteration and the last good state;
no model or state holding one is ever written), and ``torchrun`` (``LOCAL_RANK``/``RANK``/``WORLD_SIZE``;
NCCL on CUDA, gloo on CPU).
Saved models use the released format (``{'g_ema': state_dict}``, plus the constructor arguments under
``'config'``), so ``style_transfer.py`` loads them directly.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from model.checkpoint import CheckpointError
from model.errors import UserError
from pipeline.styles import StyleCodeError
from training.dist import Dist
from training.loop import EMA_DECAY, Trainer, accumulate, save_image_grid
from training.setup import (
    TrainingSetupError,
    blend_models,
    flag_type,
    generator_config,
    init_fusion_identity,
    latent_row,
    load_encoder_weights,
    preflight,
    weights_init,
)
from training.state import atomic_save, checkpoint_name

__all__ = ["build_parser", "finalize_args", "main", "checkpoint_name", "preflight", "Dist", "Trainer", "TrainingSetupError",
           "blend_models", "latent_row", "weights_init", "init_fusion_identity", "accumulate", "EMA_DECAY",
           "load_encoder_weights", "generator_config", "save_image_grid", "atomic_save"]


# ---------------------------------------------------------------------------------------------- flags
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train VToonify", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbone", default="dualstylegan", choices=["dualstylegan", "toonify"])
    # common flags of the original scripts
    p.add_argument("--iter", type=flag_type("iter"), default=2000, help="total training iterations")
    p.add_argument("--batch", type=flag_type("batch"), default=8, help="batch size per process")
    p.add_argument("--lr", type=flag_type("lr"), default=0.0001)
    p.add_argument("--local_rank", "--local-rank", type=flag_type("local_rank"), default=0,
                   help="ignored: the rank comes from LOCAL_RANK")
    p.add_argument("--start_iter", type=flag_type("start_iter"), default=0,
                   help="shifts the schedules only, as in the original (use --resume)")
    p.add_argument("--save_every", type=flag_type("save_every"), default=30000)
    p.add_argument("--save_begin", type=flag_type("save_begin"), default=30000)
    p.add_argument("--log_every", type=flag_type("log_every"), default=200)
    p.add_argument("--adv_loss", type=flag_type("adv_loss"), default=0.01)
    p.add_argument("--grec_loss", type=flag_type("grec_loss"), default=0.1)
    p.add_argument("--perc_loss", type=flag_type("perc_loss"), default=0.01)
    p.add_argument("--tmp_loss", type=flag_type("tmp_loss"), default=1.0)
    p.add_argument("--msk_loss", type=flag_type("msk_loss"), default=0.0005, help="fusion-mask loss (VToonify-D)")
    p.add_argument("--encoder_path", type=str, default=None, help="stage-1 result (default checkpoint/<name>/pretrain.pt)")
    p.add_argument("--direction_path", type=str, default="./checkpoint/directions.npy")
    p.add_argument("--faceparsing_path", type=str, default="./checkpoint/faceparsing.pth")
    p.add_argument("--style_encoder_path", type=str, default="./checkpoint/encoder.pt")
    p.add_argument("--pretrain", action="store_true", help="stage 1: pre-train the encoder only")
    p.add_argument("--stylegan_path", type=str, default=None,
                   help="D: DualStyleGAN generator.pt (default ./checkpoint/cartoon/generator.pt); "
                        "T: FFHQ StyleGAN2 (default ./checkpoint/stylegan2-ffhq-config-f.pt)")
    p.add_argument("--name", type=str, default=None, help="run name (default vtoonify_d_cartoon / vtoonify_t_cartoon)")
    # VToonify-D
    p.add_argument("--fix_degree", action="store_true", help="D: train for one style degree")
    p.add_argument("--fix_style", action="store_true", help="D: train for one exemplar style")
    p.add_argument("--fix_color", action="store_true", help="D: keep the content's colours")
    p.add_argument("--exstyle_path", type=str, default="./checkpoint/cartoon/refined_exstyle_code.npy")
    p.add_argument("--style_id", type=flag_type("style_id"), default=26)
    p.add_argument("--style_degree", type=flag_type("style_degree"), default=0.5)
    # VToonify-T
    p.add_argument("--finetunegan_path", type=str, default="./checkpoint/cartoon/finetune-000600.pt")
    p.add_argument("--weight", type=flag_type("weight"), nargs=18, default=[1.0] * 9 + [0.0] * 9,
                   help="T: per-W+-row blending weight of the fine-tuned generator")
    # additions
    p.add_argument("--seed", type=flag_type("seed"), default=0)
    p.add_argument("--init_from", type=str, default=None,
                   help="warm-start the encoder and fusion layers from a released VToonify checkpoint of the same "
                        "architecture (e.g. checkpoint/vtoonify_t_cartoon/vtoonify.pt); stage 2 then needs no --encoder_path")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from a training-state file (default checkpoint/<name>/<stage>_state.pt)")
    p.add_argument("--state_every", type=flag_type("state_every"), default=100,
                   help="iterations between training-state saves (for --resume)")
    p.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision on CUDA")
    p.add_argument("--vgg_path", type=str, default="./checkpoint/vgg16.pth", help="torchvision ImageNet VGG16 weights (LPIPS)")
    p.add_argument("--lpips_path", type=str, default="./checkpoint/lpips_vgg.pth", help="LPIPS v0.1 VGG linear heads")
    p.add_argument("--checkpoint_dir", type=str, default="./checkpoint")
    p.add_argument("--log_dir", type=str, default="./log")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--stop_at", type=flag_type("stop_at"), default=None, help=argparse.SUPPRESS)  # simulate a kill (tests)
    return p


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    dual = args.backbone == "dualstylegan"
    if args.stylegan_path is None:
        args.stylegan_path = "./checkpoint/cartoon/generator.pt" if dual else "./checkpoint/stylegan2-ffhq-config-f.pt"
    if args.name is None:
        args.name = "vtoonify_d_cartoon" if dual else "vtoonify_t_cartoon"
    if args.encoder_path is None:
        args.encoder_path = os.path.join(args.checkpoint_dir, args.name, "pretrain.pt")
    return args


def main(argv: list[str] | None = None) -> int:
    args = finalize_args(build_parser().parse_args(argv))
    try:
        preflight(args)
        env = Dist(args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        trainer = Trainer(args, env)
        if args.resume is not None:
            path = trainer.state_path if args.resume == "auto" else Path(args.resume)
            if path.exists():
                trainer.load_state(path)
            elif args.resume != "auto":
                raise TrainingSetupError(f"--resume: no training state at {path}")
        saved = trainer.run()
        if saved is not None and env.main:
            print(f"saved {saved}")
        return 0
    except (UserError, CheckpointError, StyleCodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
