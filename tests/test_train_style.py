"""Style teachers (train_style.py, training/teacher/) on a small random StyleGAN2: known answers and exact resume."""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

SIZE = 32  # 8 W+ rows
STYLE_DIM = 64
STRIPE = SIZE // 8
TARGET_RGB = (210, 40, 40)


def small_gan():
    from model.stylegan.model import Discriminator, Generator

    torch.manual_seed(0)
    g = Generator(SIZE, STYLE_DIM, 2, channel_multiplier=1, channel_max=32)
    d = Discriminator(SIZE, channel_multiplier=1, channel_max=32)
    return g, d


def style_images(n: int = 3) -> np.ndarray:
    """Synthetic style: a strong red cast with horizontal stripes, a little noise."""
    rng = np.random.default_rng(0)
    stripes = ((np.arange(SIZE) // STRIPE) % 2) * 2 - 1
    ims = np.full((n, SIZE, SIZE, 3), TARGET_RGB, np.float32) + 45 * stripes[None, :, None, None]
    return np.clip(ims + rng.normal(0, 8, ims.shape), 0, 255).astype(np.uint8)


class Inverter(torch.nn.Module):
    """A fixed stand-in for the pSp encoder: (N, 3, 256, 256) -> (N, 8, STYLE_DIM) codes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.lin = torch.nn.Linear(48, 8 * STYLE_DIM)

    def forward(self, x):
        return self.lin(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)).view(-1, 8, STYLE_DIM)


def held_out_colours(gen) -> torch.Tensor:
    """Per-image mean RGB (in [-1, 1]) of 8 faces from random codes never used in training."""
    z = torch.randn(8, STYLE_DIM, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        return gen([z], randomize_noise=False)[0].clamp(-1, 1).mean((2, 3))


def fewshot(tmp: Path, preserve_color: bool, iters: int = 30, stop_at: int | None = None, resume: bool = False):
    from training.teacher import TeacherConfig, TeacherTrainer

    g, d = small_gan()
    cfg = TeacherConfig(iter=iters, batch=4, lr=5e-3, preserve_color=preserve_color, sample_every=0, state_every=1000)
    trainer = TeacherTrainer(cfg, g, d, style_images(), ["a.png", "b.png", "c.png"], tmp, invert=Inverter(),
                             progress=False)
    if resume:
        trainer.load_state()
    return trainer, trainer.run(stop_at=stop_at)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Few-shot teachers with and without --preserve_color (30 steps each)."""
    return {pc: fewshot(tmp_path_factory.mktemp(f"teacher_pc{int(pc)}"), pc) for pc in (False, True)}


def test_fewshot_moves_held_out_samples_toward_the_style(trained):
    """Statistic: mean distance of the held-out samples' mean colour to the references' mean colour."""
    trainer, path = trained[False]
    target = torch.tensor(style_images()).float().div(127.5).sub(1).mean((0, 1, 2))
    before = (held_out_colours(trainer.g0) - target).norm(dim=1).mean().item()
    after = (held_out_colours(trainer.g_ema) - target).norm(dim=1).mean().item()
    assert after < 0.7 * before, (before, after)
    # the teacher file is the released Toonify format and loads as a StyleGAN2
    from model.checkpoint import load_stylegan2

    saved = torch.load(path, weights_only=True)
    assert path.name == "finetune-000030.pt" and set(saved) == {"g_ema", "latent_avg"}
    assert saved["latent_avg"].shape == (STYLE_DIM,)
    loaded = load_stylegan2(path)
    torch.testing.assert_close(held_out_colours(loaded), held_out_colours(trainer.g_ema), rtol=0, atol=0)
    rows = (path.parent / "losses.csv").read_text().splitlines()
    assert rows[0] == "step,perc" and len(rows) == 31
    assert (path.parent / "samples" / "step_000030.jpg").is_file()


def test_preserve_color_keeps_colour_statistics_closer_to_ffhq(trained):
    changes = {}
    for pc, (trainer, _) in trained.items():
        changes[pc] = (held_out_colours(trainer.g_ema) - held_out_colours(trainer.g0)).norm(dim=1).mean().item()
    assert changes[True] < 0.8 * changes[False], changes


def test_fewshot_resume_is_exact(tmp_path, trained):
    _, straight = fewshot(tmp_path / "straight", False, iters=6)
    stopped, none = fewshot(tmp_path / "resumed", False, iters=6, stop_at=3)
    assert none is None and stopped.step == 3 and (tmp_path / "resumed" / "teacher_state.pt").is_file()
    assert not (tmp_path / "resumed" / "finetune-000006.pt").exists()
    resumed, path = fewshot(tmp_path / "resumed", False, iters=6, resume=True)
    a, b = torch.load(straight, weights_only=True), torch.load(path, weights_only=True)
    for k in a["g_ema"]:
        torch.testing.assert_close(a["g_ema"][k], b["g_ema"][k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "straight" / "losses.csv").read_text() == (tmp_path / "resumed" / "losses.csv").read_text()


def teacher(tmp: Path, **config) -> "TeacherTrainer":  # noqa: F821
    """A few-shot trainer of :func:`small_gan` on the style pictures (nothing trained yet)."""
    from training.teacher import TeacherConfig, TeacherTrainer

    g, d = small_gan()
    cfg = TeacherConfig(**{"iter": 4, "batch": 4, "lr": 5e-3, "sample_every": 0, "state_every": 1, **config})
    return TeacherTrainer(cfg, g, d, style_images(), ["a.png", "b.png", "c.png"], tmp, invert=Inverter(), progress=False)


def test_diverging_teacher_names_the_last_good_state(tmp_path):
    """lr 1e30: step 1 is finite (its state is saved), its Adam step makes the generator's weights huge, step 2's
    loss is NaN: the run stops there naming step 2 and the state after step 1, which stays finite; no teacher."""
    from training.divergence import TrainingDiverged, is_finite
    from training.teacher.finetune import TeacherStateError

    trainer = teacher(tmp_path, lr=1e30)
    with pytest.raises(TrainingDiverged) as info:
        trainer.run()
    state = tmp_path / "teacher_state.pt"
    assert re.fullmatch(rf"training diverged at step 2: non-finite loss perc=(nan|inf); nothing from it was written; "
                        rf"last good state: {re.escape(str(state))} \(after 1 step; --resume continues from it\)",
                        str(info.value)), str(info.value)
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == 1 and is_finite(saved) and not list(tmp_path.glob("finetune-*.pt"))
    saved["g"]["conv1.conv.weight"].view(-1)[0] = float("inf")  # a state with an inf is refused on resume
    torch.save(saved, tmp_path / "inf_state.pt")
    with pytest.raises(TeacherStateError, match="inf_state.pt holds non-finite weights"):
        trainer.load_state(tmp_path / "inf_state.pt")
    rows = [r.split(",") for r in (tmp_path / "losses.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "2"] and math.isfinite(float(rows[0][1])) and not math.isfinite(float(rows[1][1]))


def test_a_non_finite_teacher_or_state_is_never_written(tmp_path):
    """A NaN in the teacher stops the teacher and the state save before the processes are compared (a NaN would
    make them differ); nothing is written."""
    from training.divergence import TrainingDiverged

    trainer = teacher(tmp_path)
    with torch.no_grad():
        next(trainer.g_ema.convs.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(TrainingDiverged, match="after 0 steps: non-finite weights in the teacher"):
        trainer.save_teacher()
    with torch.no_grad():
        next(trainer.g.to_rgbs.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(TrainingDiverged, match="after 0 steps: non-finite weights in the training state"):
        trainer.save_state()
    assert not list(tmp_path.glob("*.pt"))


def test_teacher_state_dict_round_trip(tmp_path):
    from conftest import assert_same_tree

    trainer = teacher(tmp_path)
    trainer.step, trainer.ada_p = 2, 0.25
    saved = copy.deepcopy(trainer.state_dict())
    assert set(saved) == {"step", "identity", "g", "g_ema", "g_optim", "ada", "d"}  # the keys state files always had
    with torch.no_grad():
        for p in [*trainer.g.parameters(), *trainer.g_ema.parameters(), *trainer.d.parameters()]:
            p.add_(1)
    trainer.g_optim.param_groups[0]["lr"] = 0.5
    trainer.step, trainer.ada_p, trainer.ada_signs, trainer.ada_count = 7, 0.5, 3.0, 4
    trainer.load_state_dict(saved)
    assert_same_tree(trainer.state_dict(), saved)


# ---------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def ffhq_file(tmp_path_factory) -> Path:
    g, d = small_gan()
    path = tmp_path_factory.mktemp("ffhq") / "stylegan2-small.pt"
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict()}, path)
    return path


def _pictures(folder: Path) -> Path:
    folder.mkdir()
    for i, im in enumerate(style_images(4)):
        cv2.imwrite(str(folder / f"ref{i}.png"), cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2BGR))
    return folder


def _cli(ffhq: Path, images: Path, ckpt: Path, *extra: str) -> int:
    from train_style import main

    return main(["--images", str(images), "--name", "mine", "--aligned", "--mode", "collection", "--iter", "4",
                 "--stylegan_path", str(ffhq), "--checkpoint_dir", str(ckpt), "--device", "cpu", "--no_progress",
                 "--sample_every", "2", "--state_every", "100", *extra])


def test_collection_cli_resume_is_exact(ffhq_file, tmp_path):
    images = _pictures(tmp_path / "refs")
    assert _cli(ffhq_file, images, tmp_path / "a") == 0
    assert _cli(ffhq_file, images, tmp_path / "b", "--stop_at", "2") == 0
    assert not (tmp_path / "b" / "mine" / "finetune-000004.pt").exists()
    assert _cli(ffhq_file, images, tmp_path / "b", "--resume") == 0
    a = torch.load(tmp_path / "a" / "mine" / "finetune-000004.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "mine" / "finetune-000004.pt", weights_only=True)
    for k in a["g_ema"]:
        torch.testing.assert_close(a["g_ema"][k], b["g_ema"][k], rtol=0, atol=0, msg=k)
    sa = torch.load(tmp_path / "a" / "mine" / "teacher_state.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "mine" / "teacher_state.pt", weights_only=True)
    for k in sa["d"]:
        torch.testing.assert_close(sa["d"][k], sb["d"][k], rtol=0, atol=0, msg=k)
    assert sa["ada"] == sb["ada"]
    csv_a = (tmp_path / "a" / "mine" / "losses.csv").read_text()
    assert csv_a == (tmp_path / "b" / "mine" / "losses.csv").read_text()
    assert "r1" in csv_a.splitlines()[0] and len(csv_a.splitlines()) == 5
    # the generator moved; the frozen early discriminator blocks did not
    g0, _ = small_gan()
    assert any(not torch.equal(a["g_ema"][k], v) for k, v in g0.state_dict().items() if not k.startswith("style."))
    d0 = torch.load(ffhq_file, weights_only=True)["d"]
    frozen = [k for k in d0 if k.startswith(("convs.0.", "convs.1.", "convs.2.", "convs.3."))]
    assert frozen and all(torch.equal(sa["d"][k], d0[k]) for k in frozen)
    assert any(not torch.equal(sa["d"][k], d0[k]) for k in d0 if k.startswith("final_"))
    assert sorted(p.name for p in (tmp_path / "a" / "mine" / "samples").iterdir()) == ["step_000002.jpg", "step_000004.jpg"]


def test_diverging_collection_run_is_one_line_and_exit_status_1(ffhq_file, tmp_path, capsys):
    """--lr 1e30 (collection): the discriminator's first step makes its weights huge and the generator's loss of
    that step is NaN; train_style.py stops with one line, exit status 1, and writes no teacher and no state."""
    images = _pictures(tmp_path / "refs")
    assert _cli(ffhq_file, images, tmp_path / "ckpt", "--lr", "1e30", "--state_every", "1") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: training diverged at step 1: non-finite loss ") and (
        "; nothing from it was written; no training state had been saved yet" in err), err
    assert not list((tmp_path / "ckpt" / "mine").glob("*.pt"))


@pytest.mark.parametrize("argv, expected", [
    (["--iter", "0"], "argument --iter: must be an integer >= 1"),
    (["--batch", "0"], "argument --batch: must be an integer in [1, 1024]"),
    (["--state_every", "0"], "argument --state_every: must be an integer >= 1"),
    (["--sample_every", "-1"], "argument --sample_every: must be an integer >= 0"),
    (["--lr", "0"], "argument --lr: must be > 0"),
    (["--lr", "nan"], "argument --lr: must be > 0"),
    (["--strength", "1.5"], "argument --strength: must be in [0, 1]"),
    (["--r1", "-1"], "argument --r1: must be >= 0"),
    (["--freeze_d", "-1"], "argument --freeze_d: must be an integer >= 0"),
    (["--seed", "-3"], "argument --seed: must be an integer in [0, 4294967295]"),
    (["--pretrain_iter", "0"], "argument --pretrain_iter: must be an integer >= 1"),
    (["--distill_iter", "0"], "argument --distill_iter: must be an integer >= 1"),
    (["--vtoonify_batch", "0"], "argument --vtoonify_batch: must be an integer in [1, 1024]"),
    (["--vtoonify_state_every", "0"], "argument --vtoonify_state_every: must be an integer >= 1"),
    (["--weight", "nan", *["1"] * 17], "argument --weight: must be in [0, 1]"),
    (["--perc_loss", "inf"], "argument --perc_loss: must be >= 0"),
])
def test_out_of_range_flags_are_refused_before_any_work(tmp_path, capsys, argv, expected):
    """A usage error (exit status 2) with one ``error:`` line that states the range, before anything is read."""
    from train_style import main

    with pytest.raises(SystemExit) as info:
        main(["--images", str(tmp_path / "none"), "--name", "mine", "--checkpoint_dir", str(tmp_path / "ckpt"), *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and expected in err, err
    assert [ln for ln in err.splitlines() if "error:" in ln] == [ln for ln in err.splitlines() if expected in ln]
    assert not (tmp_path / "ckpt").exists()


def test_teacher_config_is_checked_against_the_same_ranges(tmp_path):
    from common.errors import OptionError

    with pytest.raises(OptionError, match=r"^--state_every must be an integer >= 1 \(.*\), got 0$"):
        teacher(tmp_path, state_every=0)
    with pytest.raises(OptionError, match=r"^--lr must be > 0 .*got inf$"):
        teacher(tmp_path, lr=float("inf"))


def test_collection_under_torchrun(ffhq_file, tmp_path):
    """torchrun with 2 gloo processes: one teacher and one row per step, written by rank 0; both processes' batches
    count (the ADA statistic sees 2 x batch predictions a step, and the teacher is not the one-process one); the
    generators stay identical (the trainer checks it before each save); the VToonify stages run in the teacher's
    process group."""
    import json
    import os
    import subprocess
    import sys

    from conftest import free_port

    root = Path(__file__).resolve().parents[1]
    images = _pictures(tmp_path / "refs")
    argv = ["--images", str(images), "--name", "mine", "--aligned", "--mode", "collection", "--iter", "3",
            "--stylegan_path", str(ffhq_file), "--device", "cpu", "--no_progress", "--sample_every", "2",
            "--vtoonify", "--direction_path", str(tmp_path / "none.npy")]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(Path(__file__).with_name("ddp_teacher_worker.py")), str(tmp_path / "ranks"), *argv,
           "--checkpoint_dir", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["rc"] == 0 and r["stage_sums"] == [[2.0, 1.0], [2.0, 1.0]] for r in ranks), ranks
    assert proc.stdout.count("pictures aligned") == 1 and proc.stdout.count("finetune-000003.pt") == 1  # rank 0 reports
    run = tmp_path / "two" / "mine"
    assert sorted(p.name for p in run.glob("*.pt")) == ["finetune-000003.pt", "teacher_state.pt"]
    rows = (run / "losses.csv").read_text().splitlines()
    assert rows[0] == "step,d,real_score,fake_score,ada_p,r1,g" and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[1].split(",")[5] != "" and rows[2].split(",")[5] == ""  # lazy R1: the first step only
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000002.jpg", "step_000003.jpg"]
    two = torch.load(run / "teacher_state.pt", weights_only=True)
    assert two["ada"][2] == 3 * 4 * 2  # 3 steps, 4 real pictures on each of the 2 processes
    assert _cli(ffhq_file, images, tmp_path / "one", "--iter", "3") == 0
    one = torch.load(tmp_path / "one" / "mine" / "teacher_state.pt", weights_only=True)
    assert one["ada"][2] == 3 * 4
    assert any(not torch.equal(one["g"][k], v) for k, v in two["g"].items() if not k.startswith("style."))


def test_diverging_run_under_torchrun_stops_every_process(ffhq_file, tmp_path):
    """torchrun with 2 gloo processes and --lr 1e30: both processes stop at the same step with the same line and
    exit status 1 (none waits for the other), and nothing is written."""
    import json
    import os
    import subprocess
    import sys

    from conftest import free_port

    root = Path(__file__).resolve().parents[1]
    images = _pictures(tmp_path / "refs")
    argv = ["--images", str(images), "--name", "mine", "--aligned", "--mode", "collection", "--iter", "3", "--lr", "1e30",
            "--stylegan_path", str(ffhq_file), "--device", "cpu", "--no_progress", "--state_every", "1",
            "--checkpoint_dir", str(tmp_path / "two")]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(Path(__file__).with_name("ddp_teacher_worker.py")), str(tmp_path / "ranks"), *argv]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rc"] for r in ranks] == [1, 1], proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "training diverged" in ln]
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].startswith("error: training diverged at step 1: ")
    assert not list((tmp_path / "two" / "mine").glob("*.pt"))


def test_unusable_pictures_are_listed_and_stop_before_work(ffhq_file, tmp_path, capsys):
    from train_style import main

    folder = tmp_path / "refs"
    folder.mkdir()
    cv2.imwrite(str(folder / "cat.png"), cv2.cvtColor(skdata.chelsea(), cv2.COLOR_RGB2BGR))
    (folder / "notes.jpg").write_text("not a picture")
    rc = main(["--images", str(folder), "--name", "mine", "--stylegan_path", str(ffhq_file), "--checkpoint_dir",
               str(tmp_path / "ckpt"), "--device", "cpu", "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and err.startswith("error: none of the 2 pictures")
    assert "cat.png: dlib found no face" in err and "--aligned" in err and "notes.jpg" in err and "not an image" in err
    assert not list((tmp_path / "ckpt" / "mine").glob("*.pt"))
    # one usable picture among them: the others are listed and skipped, training goes on
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    from pipeline.faces import FaceDetector
    from training.teacher import align_references, list_images

    refs = align_references(list_images([folder]), tmp_path / "cache", SIZE, detector=FaceDetector())
    assert refs.names == ["astronaut.png"] and [n for n, _ in refs.skipped] == ["cat.png", "notes.jpg"]
    assert refs.images.shape == (1, SIZE, SIZE, 3) and len(list((tmp_path / "cache").glob("*.png"))) == 1


def test_pictures_to_video_model_chain(tmp_path, frozen_helpers):
    """Pictures -> teacher -> VToonify-T stage 1 and 2 (train_vtoonify.main) -> style_transfer.py stylises a photo
    with it; a second run with --resume finds every stage done and changes nothing."""
    import style_transfer
    from model.stylegan.model import Discriminator, Generator
    from train_style import main

    torch.manual_seed(0)
    ffhq = tmp_path / "ffhq.pt"
    torch.save({"g_ema": Generator(256, 512, 8, channel_multiplier=1, channel_max=32).state_dict(),
                "d": Discriminator(256, channel_multiplier=1, channel_max=32).state_dict()}, ffhq)
    np.save(tmp_path / "directions.npy", (0.1 * np.random.default_rng(0).standard_normal((4, 18, 512))).astype(np.float32))
    images = tmp_path / "refs"
    images.mkdir()
    for i, im in enumerate(style_images(4)):
        cv2.imwrite(str(images / f"ref{i}.png"), cv2.resize(im, (256, 256), interpolation=cv2.INTER_NEAREST))
    ckpt = tmp_path / "checkpoint"
    argv = ["--images", str(images), "--name", "mine", "--aligned", "--mode", "collection", "--iter", "2", "--batch", "2",
            "--stylegan_path", str(ffhq), "--checkpoint_dir", str(ckpt), "--device", "cpu", "--no_progress",
            "--style_encoder_path", str(frozen_helpers["encoder"]), "--faceparsing_path", str(frozen_helpers["faceparsing"]),
            "--direction_path", str(tmp_path / "directions.npy"), "--log_dir", str(tmp_path / "log"),
            "--vtoonify", "--pretrain_iter", "2", "--distill_iter", "2", "--vtoonify_batch", "2", "--perc_loss", "0"]
    assert main(argv) == 0
    model = ckpt / "vtoonify_t_mine" / "vtoonify.pt"
    assert (ckpt / "mine" / "finetune-000002.pt").is_file() and (ckpt / "vtoonify_t_mine" / "pretrain.pt").is_file()
    before = model.read_bytes()
    assert main(argv + ["--resume"]) == 0
    assert model.read_bytes() == before
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    rc = style_transfer.main(["--content", str(photo), "--ckpt", str(model), "--backbone", "toonify", "--scale_image",
                              "--style_encoder_path", str(frozen_helpers["encoder"]), "--faceparsing_path",
                              str(frozen_helpers["faceparsing"]), "--output_path", str(tmp_path / "out"), "--cpu",
                              "--no_progress"])
    assert rc == 0
    out = cv2.imread(str(tmp_path / "out" / "astronaut_vtoonify_t.jpg"))
    inp = cv2.imread(str(tmp_path / "out" / "astronaut_input.jpg"))
    assert out is not None and out.shape[:2] == (4 * inp.shape[0], 4 * inp.shape[1])


@pytest.mark.parametrize("init_from", [None, "released_t.pt"])
def test_vtoonify_stages_with_and_without_init_from(tmp_path, monkeypatch, capsys, init_from):
    """--vtoonify runs stage 1 then stage 2; with --init_from, stage 2 takes the encoder and fusion layers from that
    file, so stage 1 (whose result it would overwrite) is not run."""
    import train_style
    import train_vtoonify

    calls = []

    def fake_main(argv):
        calls.append(argv)
        out = Path(argv[argv.index("--checkpoint_dir") + 1]) / argv[argv.index("--name") + 1]
        out.mkdir(parents=True, exist_ok=True)
        (out / ("pretrain.pt" if "--pretrain" in argv else "vtoonify.pt")).write_bytes(b"")
        return 0

    monkeypatch.setattr(train_vtoonify, "main", fake_main)
    argv = ["--images", "refs", "--name", "mine", "--vtoonify", "--checkpoint_dir", str(tmp_path)]
    args = train_style.build_parser().parse_args(argv + (["--init_from", init_from] if init_from else []))
    assert train_style.train_vtoonify_t(args, tmp_path / "teacher.pt") == 0
    stages = [("--pretrain" in a, a[a.index("--init_from") + 1] if "--init_from" in a else None) for a in calls]
    assert stages == ([(True, None), (False, None)] if init_from is None else [(False, init_from)])
    assert (tmp_path / "vtoonify_t_mine" / "vtoonify.pt").is_file()
    assert (tmp_path / "vtoonify_t_mine" / "pretrain.pt").is_file() == (init_from is None)
