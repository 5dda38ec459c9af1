"""Train a style teacher from your own pictures, and (``--vtoonify``) a VToonify-T video model from it.

Examples::

    # few-shot (1-20 pictures, JoJoGAN recipe): checkpoint/mystyle/finetune-000300.pt
    python train_style.py --images my_refs/ --name mystyle
    # collection (~100+ pictures, Toonify recipe), then VToonify-T: checkpoint/vtoonify_t_mystyle/vtoonify.pt
    python train_style.py --images my_set/ --name mystyle --mode collection --iter 600 --vtoonify
    # several GPUs: every process trains on its own --batch pictures, gradients averaged; rank 0 writes
    torchrun --nproc_per_node 4 train_style.py --images my_set/ --name mystyle --mode collection --vtoonify

The teacher is the FFHQ StyleGAN2 (``--stylegan_path``, resolution read from the file) fine-tuned by
:mod:`training.teacher.finetune` and saved in the released Toonify format ``checkpoint/<name>/finetune-%06d.pt``
(``{'g_ema', 'latent_avg'}``), which ``train_vtoonify.py --finetunegan_path`` takes unchanged. Pictures are
FFHQ-aligned once into ``checkpoint/<name>/aligned/`` (``--aligned``: they already are aligned face squares);
those without a detectable face are listed and skipped. ``--resume`` continues a killed run exactly, each
stage where it stopped. Every numeric flag is checked against its range (``common.options.RANGES``) before
any work; a stage whose loss or weights turn NaN or infinite stops with one line (the step and the last good
state) and exit status 1, without writing a model or state from it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.options import RANGES

__all__ = ["build_parser", "main", "vtoonify_stage_argv"]

DEFAULT_ITER = {"fewshot": 300, "collection": 600}


def _ranged(flag: str, key: str | None = None):
    """The argparse ``type=`` of ``--<flag>``: the range ``RANGES[key]`` (default: the flag's name)."""
    return RANGES[key or flag].parser(f"--{flag}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Fine-tune the FFHQ StyleGAN2 into a style teacher (and train VToonify-T)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", nargs="+", required=True, help="folder(s) and/or files of style pictures")
    p.add_argument("--name", required=True, help="style name: checkpoint/<name>/ (teacher), checkpoint/vtoonify_t_<name>/")
    p.add_argument("--aligned", action="store_true", help="the pictures are already FFHQ-aligned face squares (no dlib)")
    p.add_argument("--mode", default="fewshot", choices=["fewshot", "collection"],
                   help="fewshot: 1-20 pictures, perceptual loss on mixed codes; collection: ~100+ pictures, adversarial")
    p.add_argument("--iter", type=_ranged("iter"), default=None, help="teacher steps (default 300 fewshot, 600 collection)")
    p.add_argument("--batch", type=_ranged("batch"), default=4)
    p.add_argument("--lr", type=_ranged("lr"), default=2e-3)
    p.add_argument("--strength", type=_ranged("strength"), default=1.0,
                   help="fewshot: how far the fine rows of the training codes move from the references' codes to random ones")
    p.add_argument("--preserve_color", action="store_true", help="fewshot: keep the faces' colours (learn shapes and texture)")
    p.add_argument("--freeze_d", type=_ranged("freeze_d"), default=4,
                   help="collection: discriminator blocks kept frozen (from the input side)")
    p.add_argument("--r1", type=_ranged("r1"), default=10.0, help="collection: R1 weight")
    p.add_argument("--stylegan_path", default="./checkpoint/stylegan2-ffhq-config-f.pt", help="FFHQ StyleGAN2 (g_ema [+ d])")
    p.add_argument("--style_encoder_path", default="./checkpoint/encoder.pt",
                   help="pSp Z+ encoder (fewshot inversion, VToonify)")
    p.add_argument("--faceparsing_path", default="./checkpoint/faceparsing.pth", help="BiSeNet (VToonify training)")
    p.add_argument("--direction_path", default="./checkpoint/directions.npy", help="editing directions (VToonify training)")
    p.add_argument("--vgg_path", default="./checkpoint/vgg16.pth", help="VGG16 weights (LPIPS)")
    p.add_argument("--lpips_path", default="./checkpoint/lpips_vgg.pth", help="LPIPS v0.1 linear heads")
    p.add_argument("--landmark_path", default=None, help="dlib 68-landmark model")
    p.add_argument("--checkpoint_dir", default="./checkpoint")
    p.add_argument("--sample_every", type=_ranged("sample_every"), default=100,
                   help="steps between sample sheets (0: only at the end)")
    p.add_argument("--state_every", type=_ranged("state_every"), default=50, help="steps between training-state saves")
    p.add_argument("--resume", action="store_true", help="continue every stage from its saved state")
    p.add_argument("--seed", type=_ranged("seed"), default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision on CUDA")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--stop_at", type=_ranged("stop_at"), default=None, help=argparse.SUPPRESS)  # simulate a kill (tests)
    # --- VToonify-T after the teacher ----------------------------------------------------------
    v = p.add_argument_group("VToonify-T (--vtoonify)")
    v.add_argument("--vtoonify", action="store_true", help="then train VToonify-T stage 1 and 2 with the teacher")
    v.add_argument("--pretrain_iter", type=_ranged("pretrain_iter", "iter"), default=30000,
                   help="stage 1 (encoder pre-training) iterations")
    v.add_argument("--distill_iter", type=_ranged("distill_iter", "iter"), default=2000,
                   help="stage 2 (distillation) iterations")
    v.add_argument("--vtoonify_batch", type=_ranged("vtoonify_batch", "batch"), default=None,
                   help="VToonify batch size (default: train_vtoonify.py's)")
    v.add_argument("--weight", type=_ranged("weight"), nargs=18, default=None,
                   help="per-row blending weight (train_vtoonify.py --weight)")
    for loss in ("adv_loss", "grec_loss", "perc_loss", "tmp_loss"):
        v.add_argument(f"--{loss}", type=_ranged(loss, "loss_weight"), default=None,
                       help=f"train_vtoonify.py --{loss}")
    v.add_argument("--init_from", default=None,
                   help="warm-start encoder and fusion layers from a VToonify-T checkpoint (train_vtoonify.py --init_from); "
                        "stage 1 is then skipped")
    v.add_argument("--vtoonify_state_every", type=_ranged("vtoonify_state_every", "state_every"), default=None,
                   help="train_vtoonify.py --state_every")
    v.add_argument("--log_dir", default=None, help="train_vtoonify.py --log_dir")
    return p


# ---------------------------------------------------------------------------------------------- teacher
def _load_discriminator(path: str, generator):
    """The ``'d'`` entry of the StyleGAN file as a Discriminator of the generator's size, or ``None``."""
    from model.checkpoint import infer_generator_config, load_state_dict_strict, safe_load
    from model.stylegan.model import Discriminator

    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "d" not in ckpt:
        return None
    cfg = infer_generator_config(generator.state_dict())
    d = Discriminator(cfg["size"], channel_multiplier=cfg["channel_multiplier"], channel_max=cfg["channel_max"])
    load_state_dict_strict(d, ckpt["d"], source=f"{path} ['d']")
    return d


def train_teacher(args, env) -> Path | None:
    """The teacher of ``args`` (trained, or found done with ``--resume``); ``None`` when stopped at ``--stop_at``.

    ``env`` is the :class:`training.dist.Dist` of this process: under ``torchrun`` every process trains on its own
    batches and rank 0 aligns the pictures (the others then read its cache) and writes the outputs.
    """
    from model.checkpoint import load_stylegan2
    from model.errors import UserError
    from pipeline.faces import FaceDetector
    from training.teacher import TeacherConfig, TeacherTrainer, align_references, finetune_name, list_images

    out_dir = Path(args.checkpoint_dir) / args.name
    final = out_dir / finetune_name(args.iter)
    if args.resume and final.is_file():
        if env.main:
            print(f"teacher already trained: {final}")
        return final
    if not Path(args.stylegan_path).is_file():
        raise UserError(f"--stylegan_path: {args.stylegan_path} not found (the FFHQ StyleGAN2, stylegan2-ffhq-config-f.pt)")
    paths = list_images(args.images)
    generator = load_stylegan2(args.stylegan_path, device="cpu")

    def align():
        return align_references(paths, out_dir / "aligned", generator.size, args.aligned,
                                None if args.aligned else FaceDetector(args.landmark_path))

    refs = error = None
    if env.main:
        try:
            refs = align()
        except BaseException as e:  # told to the other processes first, so that none waits for rank 0 forever
            error = e
    rank0_failed = env.sum([float(error is not None)])[0]  # also the barrier: the cache is complete
    if error is not None:
        raise error
    if rank0_failed:
        raise UserError("rank 0 could not align the pictures (its error is in its output)")
    if not env.main:
        refs = align()
    else:
        for name, reason in refs.skipped:
            print(f"skipped {name}: {reason}", file=sys.stderr)
        print(f"{len(refs.names)} of {len(paths)} pictures aligned at {generator.size} px in {out_dir / 'aligned'}"
              + (f"; {env.world} processes, {args.batch} pictures each per step" if env.world > 1 else ""))
    discriminator = _load_discriminator(args.stylegan_path, generator)
    invert = perceptual = None
    if args.mode == "fewshot":
        from model.encoder.psp import load_psp_standalone

        if not Path(args.style_encoder_path).is_file():
            raise UserError(f"--style_encoder_path: {args.style_encoder_path} not found "
                            "(the pSp encoder inverts the pictures)")
        invert = load_psp_standalone(args.style_encoder_path, env.device).requires_grad_(False)
        if discriminator is None:
            from pipeline.exstyle import perceptual_factory

            perceptual = perceptual_factory(args.vgg_path, args.lpips_path, env.device)
    cfg = TeacherConfig(mode=args.mode, iter=args.iter, batch=args.batch, lr=args.lr, strength=args.strength,
                        preserve_color=args.preserve_color, seed=args.seed, sample_every=args.sample_every,
                        state_every=args.state_every, r1=args.r1, freeze_d=args.freeze_d, amp=args.amp)
    trainer = TeacherTrainer(cfg, generator, discriminator, refs.images, refs.names, out_dir, invert=invert,
                             perceptual=perceptual, progress=not args.no_progress, dist=env)
    if args.resume and trainer.state_path.is_file():
        trainer.load_state()
        if env.main:
            print(f"resuming the teacher at step {trainer.step}")
    return trainer.run(stop_at=args.stop_at)


# ------------------------------------------------------------------------------------------- VToonify-T
def vtoonify_stage_argv(args, teacher: Path, pretrain: bool) -> list[str]:
    """``train_vtoonify.py`` arguments of stage 1 (``pretrain``) or 2 for the teacher ``teacher``."""
    argv = ["--backbone", "toonify", "--name", f"vtoonify_t_{args.name}", "--stylegan_path", args.stylegan_path,
            "--finetunegan_path", str(teacher), "--style_encoder_path", args.style_encoder_path,
            "--faceparsing_path", args.faceparsing_path, "--direction_path", args.direction_path,
            "--checkpoint_dir", args.checkpoint_dir, "--vgg_path", args.vgg_path, "--lpips_path", args.lpips_path,
            "--iter", str(args.pretrain_iter if pretrain else args.distill_iter), "--device", args.device,
            "--amp", args.amp, "--seed", str(args.seed), "--resume"]
    if pretrain:
        argv.append("--pretrain")
    optional = {"--batch": args.vtoonify_batch, "--state_every": args.vtoonify_state_every, "--log_dir": args.log_dir,
                "--adv_loss": args.adv_loss, "--grec_loss": args.grec_loss, "--perc_loss": args.perc_loss,
                "--tmp_loss": args.tmp_loss}
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, str(value)]
    if args.weight is not None:
        argv += ["--weight", *map(str, args.weight)]
    if args.init_from is not None:
        argv += ["--init_from", args.init_from]
    if args.no_progress:
        argv.append("--no_progress")
    return argv


def train_vtoonify_t(args, teacher: Path, env=None) -> int:
    """VToonify-T stage 1 and 2 with ``teacher`` (``train_vtoonify.main`` in this process: under ``torchrun`` it
    takes the process group of ``env``, whose rank 0 alone prints)."""
    import train_vtoonify

    say = print if env is None or env.main else (lambda *a, **k: None)
    run_dir = Path(args.checkpoint_dir) / f"vtoonify_t_{args.name}"
    stages = [(True, run_dir / "pretrain.pt"), (False, run_dir / "vtoonify.pt")]
    if args.init_from is not None:  # stage 2 takes the encoder and fusion layers from --init_from: no stage 1
        say(f"VToonify-T stage 1 (encoder pre-training) not needed: stage 2 starts from {args.init_from}")
        stages = stages[1:]
    for pretrain, output in stages:
        stage = "stage 1 (encoder pre-training)" if pretrain else "stage 2 (distillation)"
        if output.is_file() and args.resume:
            say(f"{stage} already done: {output}")
            continue
        say(f"VToonify-T {stage}")
        rc = train_vtoonify.main(vtoonify_stage_argv(args, teacher, pretrain))
        if rc != 0:
            return rc
    say(f"saved {run_dir / 'vtoonify.pt'} (style_transfer.py --backbone toonify --ckpt {run_dir / 'vtoonify.pt'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.iter is None:
        args.iter = DEFAULT_ITER[args.mode]
    from common.errors import USER_ERRORS
    from training.dist import Dist

    try:
        env = Dist(args.device)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        try:
            teacher = train_teacher(args, env)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if teacher is None:  # stopped early (--stop_at)
            return 0
        if env.main:
            print(f"saved {teacher}")
        if args.vtoonify:
            return train_vtoonify_t(args, teacher, env)
        return 0
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
