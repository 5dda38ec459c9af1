"""train_vtoonify.py on small randomly initialised teachers saved in the released formats."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train_vtoonify
from conftest import free_port
from model.checkpoint import load_vtoonify, safe_load
from model.dualstylegan import DualStyleGAN
from model.fill import fill_module
from model.stylegan.model import Generator
from model.vtoonify import VToonify
from pipeline.styles import save_exstyle_codes

ROOT = Path(__file__).resolve().parents[1]
# 256px teachers with the released style width (the real pSp encoder's codes must fit) and tiny feature maps.
TEACHER = dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=1, channel_max=32)


@pytest.fixture(scope="session")
def teachers(tmp_path_factory, frozen_helpers) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    dsg = fill_module(DualStyleGAN(256, 512, 8, 1, res_index=2, channel_max=32))
    torch.save({"g_ema": dsg.state_dict()}, root / "generator.pt")
    ffhq = fill_module(Generator(**TEACHER))
    torch.save({"g_ema": ffhq.state_dict(), "latent_avg": torch.zeros(512)}, root / "ffhq.pt")
    torch.manual_seed(1)
    torch.save({"g_ema": fill_module(Generator(**TEACHER)).state_dict()}, root / "finetune.pt")
    rng = np.random.default_rng(0)
    np.save(root / "directions.npy", (0.1 * rng.standard_normal((4, 18, 512))).astype(np.float32))
    from model.stylegan.lpips import LPIPS

    lpips = fill_module(LPIPS())  # stand-ins for torchvision's VGG16 file and the LPIPS heads
    torch.save({k[len("net."):]: v for k, v in lpips.state_dict().items() if k.startswith("net.")}, root / "vgg16.pth")
    torch.save({k: v for k, v in lpips.state_dict().items() if k.startswith("lin")}, root / "lpips_vgg.pth")
    save_exstyle_codes(root / "exstyle.npy",
                       {f"s{i}.jpg": rng.standard_normal((1, 14, 512)).astype(np.float32) for i in range(3)})
    return {"root": root, **frozen_helpers}


def args_for(teachers, tmp_path: Path, backbone: str, *extra: str) -> list[str]:
    t = teachers["root"]
    args = ["--backbone", backbone, "--device", "cpu", "--batch", "2", "--no_progress",
            "--checkpoint_dir", str(tmp_path / "checkpoint"), "--log_dir", str(tmp_path / "log"),
            "--direction_path", str(t / "directions.npy"), "--faceparsing_path", str(teachers["faceparsing"]),
            "--style_encoder_path", str(teachers["encoder"]), "--perc_loss", "0", "--name", "run"]
    if backbone == "dualstylegan":
        args += ["--stylegan_path", str(t / "generator.pt"), "--exstyle_path", str(t / "exstyle.npy"), "--style_id", "1"]
    else:
        args += ["--stylegan_path", str(t / "ffhq.pt"), "--finetunegan_path", str(t / "finetune.pt")]
    return args + list(extra)


def _losses(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize("backbone", ["dualstylegan", "toonify"])
def test_pretrain_then_train_writes_loadable_checkpoints(teachers, tmp_path, backbone):
    assert train_vtoonify.main(args_for(teachers, tmp_path, backbone, "--pretrain", "--iter", "2")) == 0
    pretrain = tmp_path / "checkpoint" / "run" / "pretrain.pt"
    enc = safe_load(pretrain)["g_ema"]
    model = VToonify(in_size=64, out_size=256, style_channels=512, channel_multiplier=1, channel_max=32, num_res_layers=2,
                     backbone=backbone)
    model.encoder.load_state_dict(enc)  # strict

    perceptual = ["--perc_loss", "0.01", "--vgg_path", str(teachers["root"] / "vgg16.pth"),
                  "--lpips_path", str(teachers["root"] / "lpips_vgg.pth")] if backbone == "dualstylegan" else []
    assert train_vtoonify.main(args_for(teachers, tmp_path, backbone, "--iter", "3", "--log_every", "2", *perceptual)) == 0
    name = "vtoonify_s_d_c.pt" if backbone == "dualstylegan" else "vtoonify.pt"
    saved = tmp_path / "checkpoint" / "run" / name
    loaded = load_vtoonify(saved, backbone=backbone)
    assert safe_load(saved)["config"]["out_size"] == 256
    # the frozen backbone is the teacher's, the encoder moved away from the pre-trained one
    assert not torch.equal(loaded.encoder.state_dict()["0.0.weight"], enc["0.0.weight"])
    assert (tmp_path / "log" / "run" / "00001.jpg").exists() and (tmp_path / "log" / "run" / "00003.jpg").exists()
    rows = _losses(tmp_path / "log" / "run" / "losses.csv")
    assert len(rows) == 4 and rows[0].split(",")[1:] == sorted(rows[0].split(",")[1:])
    assert {"adv", "rec", "d", "tmp"} <= set(rows[0].split(","))
    assert all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)
    assert float(rows[1].split(",")[rows[0].split(",").index("tmp")]) == 0.0  # temporal loss ramps up in the 2nd half
    if backbone == "dualstylegan":
        assert "msk" in rows[0] and "perc" in rows[0]
        assert (tmp_path / "checkpoint" / "run" / "exstyle_code.npy").exists()

    # the trained model stylises an image through style_transfer.py
    import cv2
    from skimage import data as skdata

    from style_transfer import main as stylise

    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert stylise(["--content", str(img), "--scale_image", "--ckpt", str(saved), "--backbone", backbone, "--style_id", "1",
                    "--style_encoder_path", str(teachers["encoder"]), "--faceparsing_path", str(teachers["faceparsing"]),
                    "--output_path", str(out), "--cpu", "--no_progress", "--padding", "96", "96", "96", "96"]) == 0
    suffix = "d" if backbone == "dualstylegan" else "t"
    assert cv2.imread(str(out / f"face_vtoonify_{suffix}.jpg")).shape == (4 * 192, 4 * 192, 3)


def test_stage1_loss_falls(teachers, tmp_path):
    """On a fixed teacher the encoder's feature-regression loss on a held-out batch drops clearly."""
    args = train_vtoonify.finalize_args(train_vtoonify.build_parser().parse_args(
        args_for(teachers, tmp_path, "toonify", "--pretrain", "--iter", "1000", "--lr", "0.002")))
    env = train_vtoonify.Dist("cpu")
    trainer = train_vtoonify.Trainer(args, env)

    @torch.no_grad()
    def held_out_loss() -> float:
        with torch.random.fork_rng():
            torch.manual_seed(1234)
            ws = trainer.sample_content_codes(4)
            inp, _ = trainer.model_input(trainer.render_content(ws))
            feat, skip = trainer.g_ema.generator([ws], input_is_latent=True, truncation=0.5,
                                                 return_feature_ind=2 * trainer.g_ema.bottom_block + 2,
                                                 truncation_latent=0, randomize_noise=False)
            pred_feat, pred_skip = trainer.generator(inp, None, return_feat=True)
        return (torch.nn.functional.mse_loss(pred_feat, feat) + torch.nn.functional.mse_loss(pred_skip, skip)).item()

    before = held_out_loss()
    for i in range(25):
        trainer.pretrain_step(i)
    after = held_out_loss()
    assert after < 0.5 * before, (before, after)


def test_kill_and_resume_is_bit_exact(teachers, tmp_path):
    common = ("--iter", "3", "--state_every", "1", "--tmp_loss", "1.0")  # the temporal loss (random crops) is on in the 3rd
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train_vtoonify.main(args_for(teachers, straight, "dualstylegan", "--pretrain", "--iter", "1")) == 0
    (killed / "checkpoint" / "run").mkdir(parents=True)  # the same stage-1 result for both runs
    shutil.copyfile(straight / "checkpoint" / "run" / "pretrain.pt", killed / "checkpoint" / "run" / "pretrain.pt")
    assert train_vtoonify.main(args_for(teachers, straight, "dualstylegan", *common)) == 0
    assert train_vtoonify.main(args_for(teachers, killed, "dualstylegan", *common, "--stop_at", "2")) == 0
    assert not (killed / "checkpoint" / "run" / "vtoonify_s_d_c.pt").exists()
    assert train_vtoonify.main(args_for(teachers, killed, "dualstylegan", *common, "--resume")) == 0
    assert _losses(killed / "log" / "run" / "losses.csv") == _losses(straight / "log" / "run" / "losses.csv")
    a = safe_load(straight / "checkpoint" / "run" / "vtoonify_s_d_c.pt")["g_ema"]
    b = safe_load(killed / "checkpoint" / "run" / "vtoonify_s_d_c.pt")["g_ema"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_torchrun(teachers, tmp_path):
    """torchrun with 2 gloo processes: completes, and both ranks end with identical EMA weights."""
    assert train_vtoonify.main(args_for(teachers, tmp_path, "toonify", "--pretrain", "--iter", "1")) == 0
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(worker), str(tmp_path / "ema"), *args_for(teachers, tmp_path, "toonify", "--iter", "2", "--batch", "1")]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / "ema" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    weights = [k for k in r0 if not k.startswith("_")]
    assert weights and all(torch.equal(r0[k], r1[k]) for k in weights)
    assert (tmp_path / "checkpoint" / "run" / "vtoonify.pt").exists()
    # each rank draws its own data stream
    assert not torch.equal(r0["_rng_state"], r1["_rng_state"])


def test_errors_before_any_work(teachers, tmp_path, capsys):
    t = teachers["root"]
    assert train_vtoonify.main(args_for(teachers, tmp_path, "dualstylegan", "--direction_path", str(tmp_path / "nope.npy"),
                                        "--iter", "1")) == 1
    err = capsys.readouterr().err
    assert "--direction_path: file not found" in err and "--encoder_path" in err  # every problem at once
    assert train_vtoonify.main(args_for(teachers, tmp_path, "dualstylegan", "--batch", "6", "--iter", "1")) == 1
    assert "minibatch-stddev" in capsys.readouterr().err
    # a StyleGAN2 file where a DualStyleGAN teacher is expected
    assert train_vtoonify.main(args_for(teachers, tmp_path, "dualstylegan", "--pretrain", "--stylegan_path",
                                        str(t / "ffhq.pt"))) == 1
    assert "DualStyleGAN" in capsys.readouterr().err
    assert train_vtoonify.main(args_for(teachers, tmp_path, "dualstylegan", "--pretrain", "--style_id", "7")) == 1
    assert "--style_id 7" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint" / "run" / "pretrain.pt").exists()


def test_checkpoint_names():
    parse = lambda *a: train_vtoonify.finalize_args(train_vtoonify.build_parser().parse_args(list(a)))  # noqa: E731
    assert train_vtoonify.checkpoint_name(parse()) == "vtoonify_s_d_c.pt"
    assert train_vtoonify.checkpoint_name(parse("--fix_color")) == "vtoonify_s_d.pt"
    assert train_vtoonify.checkpoint_name(parse("--fix_style", "--fix_degree", "--fix_color")) == "vtoonify_s026_d0.5.pt"
    assert train_vtoonify.checkpoint_name(parse("--backbone", "toonify"), 300) == "vtoonify_00300.pt"
    assert train_vtoonify.checkpoint_name(parse("--pretrain"), 30000) == "pretrain-30000.pt"
    assert parse("--backbone", "toonify").stylegan_path.endswith("stylegan2-ffhq-config-f.pt")


def test_blend_models_follows_rows():
    base, ft = fill_module(Generator(64, 16, 2, 1, channel_max=16)), fill_module(Generator(64, 16, 2, 1, channel_max=16))
    weight = [1.0] * 3 + [0.0] * 3 + [0.5] * 4
    out = train_vtoonify.blend_models(ft, base, weight).state_dict()
    b, f = base.state_dict(), ft.state_dict()
    assert torch.equal(out["conv1.conv.weight"], f["conv1.conv.weight"])  # row 0
    assert torch.equal(out["convs.4.conv.weight"], b["convs.4.conv.weight"])  # row 5
    torch.testing.assert_close(out["to_rgbs.3.bias"], 0.5 * (b["to_rgbs.3.bias"] + f["to_rgbs.3.bias"]))  # row 9
    assert torch.equal(out["style.1.weight"], b["style.1.weight"]) and torch.equal(out["input.input"], b["input.input"])
