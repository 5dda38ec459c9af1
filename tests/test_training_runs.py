"""Training behaviour on the tiny teachers of test_train.py: stage-2 batch synthesis and its ``--fix_*``
branches, the colour jitter, ``--init_from``, resume checks, the losses CSV on resume, ``--amp`` on CPU, the
``config`` entry that trained checkpoints carry, the ranges of the flags, diverged runs and the trainer's
state_dict."""
from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import pytest
import torch
from test_train import args_for, teachers  # noqa: F401  (the session fixture of tiny teachers)

import train_vtoonify
from conftest import assert_same_tree
from model.checkpoint import CheckpointError, CheckpointMismatchError, load_vtoonify, safe_load
from model.dualstylegan import STRUCTURE_ROWS
from model.fill import fill_module
from model.vtoonify import PARSING_SCALE, VToonify
from training.data import Synthesis, colour_jitter
from training.divergence import FiniteCheck, TrainingDiverged, is_finite
from training.setup import TRAINABLE_STAGE2, preflight
from training.state import read_state

# the student architecture the tiny teachers give (see test_train.TEACHER)
STUDENT = dict(in_size=64, out_size=256, style_channels=512, channel_multiplier=1, channel_max=32, num_res_layers=2)


def parse(*argv: str):
    return train_vtoonify.finalize_args(train_vtoonify.build_parser().parse_args(list(argv)))


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Path]:
    """"Released" VToonify-D/T files of the student architecture, with fill-rule weights (seeded)."""
    root = tmp_path_factory.mktemp("released")
    out = {}
    for key, backbone, seed in (("d", "dualstylegan", 5), ("t", "toonify", 6)):
        torch.manual_seed(seed)
        out[key] = root / f"vtoonify_{key}.pt"
        torch.save({"g_ema": fill_module(VToonify(**STUDENT, backbone=backbone)).state_dict()}, out[key])
    torch.save({"g_ema": fill_module(VToonify(**{**STUDENT, "channel_max": 16}, backbone="toonify")).state_dict()},
               root / "narrow_t.pt")
    out["narrow_t"] = root / "narrow_t.pt"
    return out


@pytest.fixture(scope="module")
def trainer_d(teachers, released, tmp_path_factory):  # noqa: F811
    """A stage-2 VToonify-D trainer (warm-started, so no stage 1 is needed); tests set ``trainer.data.args``."""
    tmp = tmp_path_factory.mktemp("trainer_d")
    args = parse(*args_for(teachers, tmp, "dualstylegan", "--init_from", str(released["d"]), "--iter", "10"))
    return train_vtoonify.Trainer(args, train_vtoonify.Dist("cpu"))


def stub_style_encoder(trainer, value: float = 7.0):
    """Replace E_s (the pSp encoder path) by a constant code, so the rows it supplies are recognisable."""
    data = trainer.data
    data.style_codes_of = lambda img: torch.full((img.shape[0], data.n_latent, data.style_channels), value)


def with_flags(trainer, **flags):
    """Point the trainer's batch synthesis at other flag values (the ``--fix_*`` flags off unless given)."""
    base = dict(fix_style=False, fix_color=False, fix_degree=False, pretrain=False)
    trainer.data.args = argparse.Namespace(**{**vars(trainer.args), **base, **flags})
    return trainer.data.args


# ------------------------------------------------------------------------------- stage-2 synthesis (D)
def test_model_input_divides_the_parsing_by_16(trainer_d):
    data = trainer_d.data
    img = torch.rand(2, 3, 256, 256) * 2 - 1
    inp, parsing = data.model_input(img)
    assert PARSING_SCALE == 16 and inp.shape == (2, 22, 64, 64) and parsing.shape == (2, 19, 128, 128)
    assert torch.equal(inp[:, :3], data.down(data.down(img)))
    torch.testing.assert_close(inp[:, 3:] * 16, data.down(parsing))


def test_fix_style_and_fix_color_choose_the_style_code(trainer_d):
    data = trainer_d.data
    stub_style_encoder(trainer_d)
    wc = data.sample_content_codes(2)
    xc = torch.zeros(2, 3, 256, 256)
    styles, sid = data.styles, 1

    with_flags(trainer_d, fix_style=True, fix_color=True)  # one exemplar's structure, the content's colours
    d_s, weight, xl, ind = data.stage2_style(wc, xc, first=False)
    assert ind.tolist() == [sid, sid] and weight[STRUCTURE_ROWS:] == [0.0] * (data.n_latent - STRUCTURE_ROWS)
    assert torch.equal(xl[:, :STRUCTURE_ROWS], styles[[sid, sid], :STRUCTURE_ROWS])
    assert torch.equal(xl[:, STRUCTURE_ROWS:], torch.full_like(xl[:, STRUCTURE_ROWS:], 7.0))

    with_flags(trainer_d, fix_style=True)  # colour transfer from a fixed exemplar: its whole code
    d_s, weight, xl, ind = data.stage2_style(wc, xc, first=False)
    assert weight[STRUCTURE_ROWS:] == [1.0] * (data.n_latent - STRUCTURE_ROWS) and torch.equal(xl, styles[[sid, sid]])

    with_flags(trainer_d)  # random exemplars: structure rows from them, colour rows from E_s(content)
    seen = set()
    for _ in range(12):
        d_s, weight, xl, ind = data.stage2_style(wc, xc, first=False)
        seen |= set(ind.tolist())
        assert torch.equal(xl[:, :STRUCTURE_ROWS], styles[ind, :STRUCTURE_ROWS])
        assert torch.equal(xl[:, STRUCTURE_ROWS:], torch.full_like(xl[:, STRUCTURE_ROWS:], 7.0))
        assert weight == [d_s] * STRUCTURE_ROWS + [1.0] * (data.n_latent - STRUCTURE_ROWS)
    assert seen == {0, 1, 2}
    # the first iteration always uses --style_id and --style_degree
    d_s, _, _, ind = data.stage2_style(wc, xc, first=True)
    assert ind.tolist() == [sid, sid] and d_s == data.args.style_degree


def test_fix_degree_and_the_degree_levels(trainer_d):
    data = trainer_d.data
    stub_style_encoder(trainer_d)
    wc, xc = data.sample_content_codes(2), torch.zeros(2, 3, 256, 256)
    with_flags(trainer_d, fix_style=True, fix_degree=True, style_degree=0.3)
    for first in (True, False, False):
        d_s, weight, _, _ = data.stage2_style(wc, xc, first=first)
        assert d_s == 0.3 and weight[:STRUCTURE_ROWS] == [0.3] * STRUCTURE_ROWS
    with_flags(trainer_d, fix_style=True, style_degree=0.3)
    degrees = {data.stage2_style(wc, xc, first=False)[0] for _ in range(60)}
    assert degrees == {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}
    # stage 1: 0 for the first quarter of training, then uniform in [0, 1]
    args = with_flags(trainer_d, pretrain=True)
    assert {data.sample_degree(i) for i in range(args.iter // 4 + 1)} == {0.0}
    late = [data.sample_degree(args.iter // 4 + 1) for _ in range(20)]
    assert all(0 <= d < 1 for d in late) and len(set(late)) == 20


def test_colour_jitter_re_renders_the_input(trainer_d, monkeypatch):
    """From iter/2 on, the content image is re-rendered from a code whose colour rows blend in the previous
    iteration's; the teacher target keeps the unjittered code. The augmentation is made the identity here."""
    import model.simple_augment

    data = trainer_d.data
    stub_style_encoder(trainer_d)
    with_flags(trainer_d)
    monkeypatch.setattr(model.simple_augment, "random_apply_affine", lambda x, p: (x, None))
    rendered = []
    real_render = type(data).render_content

    outputs = []

    def spy(codes):
        rendered.append(codes.clone())
        outputs.append(real_render(data, codes))
        return outputs[-1]

    monkeypatch.setattr(data, "render_content", spy)
    prev = data.sample_content_codes(2)
    data.prev_wc = prev
    batch = data.stage2_batch(1, 8)  # iteration 8 of 10: r = 1.6
    wc = rendered[0]
    assert len(rendered) == 2 and torch.equal(rendered[1], colour_jitter(wc, prev, 8, 10))
    assert not torch.equal(rendered[1][:, STRUCTURE_ROWS:], wc[:, STRUCTURE_ROWS:])
    assert torch.equal(batch["x"], outputs[1])  # the input is the jittered rendering
    assert torch.equal(data.prev_wc, wc)  # kept for the next iteration
    assert batch["x"].shape == (2, 3, 256, 256) and batch["degree_label"].shape == (2, 1)
    assert torch.equal(batch["degree_label"], torch.full((2, 1), batch["d_s"]))


def test_toonify_style_code(teachers, released, tmp_path):  # noqa: F811
    args = parse(*args_for(teachers, tmp_path, "toonify", "--init_from", str(released["t"]), "--pretrain"))
    trainer = train_vtoonify.Trainer(args, train_vtoonify.Dist("cpu"))
    trainer.args.pretrain = trainer.data.args.pretrain = False
    stub_style_encoder(trainer, 3.0)
    wc = trainer.data.sample_content_codes(2)
    d_s, weight, xl, ind = trainer.data.stage2_style(wc, torch.zeros(2, 3, 256, 256), first=True)
    assert d_s is None and weight is None and ind is None
    assert torch.equal(xl[:, :STRUCTURE_ROWS], 0.5 * wc[:, :STRUCTURE_ROWS])  # the truncation on the structure rows
    assert torch.equal(xl[:, STRUCTURE_ROWS:], torch.full_like(xl[:, STRUCTURE_ROWS:], 3.0))


# -------------------------------------------------------------------------------------- --init_from
def test_init_from_warm_starts_encoder_and_fusion(trainer_d, released, teachers):  # noqa: F811
    file = safe_load(released["d"])["g_ema"]
    for model in (trainer_d.generator, trainer_d.g_ema):
        own = model.state_dict()
        for k, v in own.items():
            part = k.split(".")[0]
            if part in TRAINABLE_STAGE2:
                assert torch.equal(v, file[k]), k
    # the frozen generator is the teacher's, not the released file's
    teacher = safe_load(teachers["root"] / "generator.pt")["g_ema"]
    own = trainer_d.generator.state_dict()
    assert all(torch.equal(own[f"generator.{k}"], v) for k, v in teacher.items())
    assert not torch.equal(own["generator.generator.conv1.conv.weight"], file["generator.generator.conv1.conv.weight"])


def test_init_from_needs_no_stage_1_result(teachers, released, tmp_path):  # noqa: F811
    preflight(parse(*args_for(teachers, tmp_path, "toonify", "--init_from", str(released["t"]))))
    with pytest.raises(train_vtoonify.TrainingSetupError, match="--encoder_path"):
        preflight(parse(*args_for(teachers, tmp_path, "toonify")))


@pytest.mark.parametrize("which,message", [
    ("d", "a VToonify-D checkpoint, but this run trains VToonify-T"),
    ("narrow_t", "architecture mismatch: encoder.0.2.weight is (16, 32, 3, 3) in the file, (32, 32, 3, 3) in the student"),
    ("pretrain", "not a VToonify checkpoint (found a vtoonify_encoder state_dict) (a stage-1 result goes to --encoder_path)"),
])
def test_init_from_mismatch_is_one_line(teachers, released, tmp_path, capsys, which, message):  # noqa: F811
    path = released.get(which)
    if which == "pretrain":
        path = tmp_path / "pretrain.pt"
        torch.save({"g_ema": fill_module(VToonify(**STUDENT, backbone="toonify")).encoder.state_dict()}, path)
    assert train_vtoonify.main(args_for(teachers, tmp_path, "toonify", "--init_from", str(path), "--iter", "1")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "checkpoint" / "run" / "vtoonify.pt").exists()


# ------------------------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def stage1_runs(teachers, tmp_path_factory):  # noqa: F811
    """Stage-1 VToonify-T runs of 4 iterations: straight, killed after 3 with states every 2, and with --amp bf16."""
    root = tmp_path_factory.mktemp("stage1")
    common = ("--pretrain", "--iter", "4", "--state_every", "2")
    runs = {"straight": root / "straight", "killed": root / "killed", "amp": root / "amp"}
    assert train_vtoonify.main(args_for(teachers, runs["straight"], "toonify", *common)) == 0
    assert train_vtoonify.main(args_for(teachers, runs["amp"], "toonify", *common, "--amp", "bf16")) == 0
    assert train_vtoonify.main(args_for(teachers, runs["killed"], "toonify", *common, "--stop_at", "3")) == 0
    rows_at_kill = (runs["killed"] / "log" / "run" / "pretrain_losses.csv").read_text().splitlines()
    assert train_vtoonify.main(args_for(teachers, runs["killed"], "toonify", *common, "--resume")) == 0
    return {**runs, "rows_at_kill": rows_at_kill, "common": common}


def test_resume_rewrites_the_rows_logged_after_the_last_state(stage1_runs):
    """The kill came one iteration after the last state save: that row is logged again, not twice."""
    assert len(stage1_runs["rows_at_kill"]) == 1 + 3
    csv = lambda run: (stage1_runs[run] / "log" / "run" / "pretrain_losses.csv").read_text().splitlines()  # noqa: E731
    assert csv("killed") == csv("straight") and len(csv("straight")) == 1 + 4
    a = safe_load(stage1_runs["straight"] / "checkpoint" / "run" / "pretrain.pt")["g_ema"]
    b = safe_load(stage1_runs["killed"] / "checkpoint" / "run" / "pretrain.pt")["g_ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_amp_is_full_precision_on_cpu(stage1_runs):
    """``--amp`` is mixed precision on CUDA only: on the CPU a bf16 run equals a full-precision one bit for bit."""
    read = lambda run: (stage1_runs[run] / "log" / "run" / "pretrain_losses.csv").read_text()  # noqa: E731
    assert read("amp") == read("straight")


@pytest.mark.parametrize("extra,message", [
    (("--batch", "1"), "was saved by a run with --batch 2 (now 1); resume with the same flags"),
    (("--seed", "3", "--lr", "0.01"), "--lr 0.0001 (now 0.01), --seed 0 (now 3)"),
    (("--weight", *["0.5"] * 18), "--weight 1.0 1.0"),
])
def test_resume_with_other_flags_is_one_line(teachers, stage1_runs, capsys, extra, message):  # noqa: F811
    argv = args_for(teachers, stage1_runs["straight"], "toonify", *stage1_runs["common"], *extra, "--resume")
    assert train_vtoonify.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_resume_other_backbone_or_world_size_is_one_line(teachers, stage1_runs, tmp_path, capsys):  # noqa: F811
    state = stage1_runs["straight"] / "checkpoint" / "run" / "pretrain_state.pt"
    argv = args_for(teachers, tmp_path, "dualstylegan", *stage1_runs["common"], "--resume", str(state))
    assert train_vtoonify.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a toonify pretrain state, not dualstylegan pretrain" in err, err
    saved = safe_load(state)
    saved["world_size"] = 2
    torch.save(saved, tmp_path / "state.pt")
    argv = args_for(teachers, tmp_path, "toonify", *stage1_runs["common"], "--resume", str(tmp_path / "state.pt"))
    assert train_vtoonify.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was saved by 2 processes; resume with the same number" in err, err
    missing = str(tmp_path / "nope.pt")
    assert train_vtoonify.main(args_for(teachers, tmp_path, "toonify", "--pretrain", "--resume", missing)) == 1
    assert "--resume: no training state at" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the 'config' entry
def tiny_t(**over) -> tuple[VToonify, dict]:
    cfg = dict(in_size=64, out_size=256, style_channels=64, num_mlps=2, channel_multiplier=1, num_res_layers=2,
               backbone="toonify", channel_max=16, **over)
    torch.manual_seed(0)
    return fill_module(VToonify(**cfg)), cfg


def test_loader_builds_from_the_config_entry(tmp_path):
    model, cfg = tiny_t()
    sd = model.state_dict()
    torch.save({"g_ema": sd, "config": cfg}, tmp_path / "ok.pt")
    loaded = load_vtoonify(tmp_path / "ok.pt")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())
    # weights with a tensor missing: the config still builds the model, and the error names the tensor
    torch.save({"g_ema": {k: v for k, v in sd.items() if k != "encoder.5.weight"}, "config": cfg}, tmp_path / "cut.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): encoder\.5\.weight"):
        load_vtoonify(tmp_path / "cut.pt")
    # a config that disagrees with the weights
    torch.save({"g_ema": sd, "config": {**cfg, "channel_max": 32}}, tmp_path / "wide.pt")
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        load_vtoonify(tmp_path / "wide.pt")
    # a config that is not a set of VToonify arguments
    for bad in ({**cfg, "depth": 3}, {**cfg, "in_size": 2.5}, {**cfg, "in_size": 48}):
        torch.save({"g_ema": sd, "config": bad}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match="'config' entry"):
            load_vtoonify(tmp_path / "bad.pt")


# ------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("argv, expected", [
    (["--iter", "0"], "argument --iter: must be an integer >= 1"),
    (["--batch", "0"], "argument --batch: must be an integer in [1, 1024]"),
    (["--state_every", "0"], "argument --state_every: must be an integer >= 1"),
    (["--save_every", "0"], "argument --save_every: must be an integer >= 1"),
    (["--log_every", "0"], "argument --log_every: must be an integer >= 1"),
    (["--save_begin", "-1"], "argument --save_begin: must be an integer >= 0"),
    (["--start_iter", "-1"], "argument --start_iter: must be an integer >= 0"),
    (["--stop_at", "0"], "argument --stop_at: must be an integer >= 1"),
    (["--lr", "0"], "argument --lr: must be > 0"),
    (["--lr", "-0.0001"], "argument --lr: must be > 0"),
    (["--lr", "nan"], "argument --lr: must be > 0"),
    (["--lr", "inf"], "argument --lr: must be > 0"),
    (["--adv_loss", "-0.01"], "argument --adv_loss: must be >= 0"),
    (["--tmp_loss", "inf"], "argument --tmp_loss: must be >= 0"),
    (["--msk_loss", "nan"], "argument --msk_loss: must be >= 0"),
    (["--weight", *["1"] * 17, "nan"], "argument --weight: must be in [0, 1]"),
    (["--weight", "-0.5", *["1"] * 17], "argument --weight: must be in [0, 1]"),
    (["--style_degree", "1.5"], "argument --style_degree: must be in [0, 1]"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]"),
])
def test_out_of_range_flags_are_refused_before_any_work(teachers, tmp_path, capsys, argv, expected):  # noqa: F811
    """Refused while the command line is parsed (a usage error, exit status 2, one ``error:`` line that states
    the range): nothing is loaded or written. (--iter 1 first: a value let through trains briefly, and fails.)"""
    with pytest.raises(SystemExit) as info:
        train_vtoonify.main(args_for(teachers, tmp_path, "toonify", "--pretrain", "--iter", "1", *argv))
    err = capsys.readouterr().err
    assert info.value.code == 2 and expected in err, err
    assert [ln for ln in err.splitlines() if "error:" in ln] == [ln for ln in err.splitlines() if expected in ln]
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "log").exists()


def test_preflight_checks_the_same_ranges(teachers, tmp_path):  # noqa: F811
    """A Namespace built in Python (not by the parser) is checked too, every problem at once."""
    args = parse(*args_for(teachers, tmp_path, "toonify", "--init_from", "x.pt"))
    args.batch, args.lr, args.state_every = 0, float("nan"), 0
    with pytest.raises(train_vtoonify.TrainingSetupError) as info:
        preflight(args)
    message = str(info.value)
    assert "--batch must be an integer in [1, 1024]" in message and "--lr must be > 0" in message
    assert "--state_every must be an integer >= 1" in message and "--init_from: file not found" in message


# ---------------------------------------------------------------------------------------- divergence
DIVERGE = ("--lr", "1e30", "--iter", "3", "--state_every", "1", "--save_every", "1", "--save_begin", "1")


def test_diverging_stage_2_stops_at_once_and_leaves_the_earlier_model(teachers, released, tmp_path, capsys,  # noqa: F811
                                                                      monkeypatch):
    """--lr 1e30: the discriminator's first step makes its weights huge, so the generator's adversarial loss of
    that same iteration is NaN. The run stops there with one line and exit status 1 and writes no model and no
    state; the model an earlier run left under the same name is untouched."""
    # E_s (the released-size pSp encoder, ~10 s of CPU per batch here) gives a constant code: the run diverges all the same
    monkeypatch.setattr(Synthesis, "style_codes_of",
                        lambda data, img: torch.full((img.shape[0], data.n_latent, data.style_channels), 7.0))
    run = tmp_path / "checkpoint" / "run"
    run.mkdir(parents=True)
    (run / "vtoonify.pt").write_bytes(released["t"].read_bytes())
    earlier = (run / "vtoonify.pt").read_bytes()
    assert train_vtoonify.main(args_for(teachers, tmp_path, "toonify", "--init_from", str(released["t"]), *DIVERGE)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.fullmatch(r"error: training diverged at iteration 0: non-finite loss adv=(nan|inf); nothing from it was "
                        r"written; no training state had been saved yet\n", err), err
    assert sorted(p.name for p in run.iterdir()) == ["vtoonify.pt"] and (run / "vtoonify.pt").read_bytes() == earlier
    rows = (tmp_path / "log" / "run" / "losses.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("0,")  # the iteration that diverged is logged, with its NaN


def test_diverging_stage_1_names_the_last_good_state(teachers, tmp_path, capsys):  # noqa: F811
    """--lr 1e30 in stage 1: iteration 0 is finite and saved (model and state), its step makes the encoder's
    weights huge, iteration 1's loss is NaN: the line names iteration 1 and the state after iteration 0, which
    is finite and the only one; no model of iteration 1 or later is written."""
    argv = args_for(teachers, tmp_path, "toonify", "--pretrain", *DIVERGE)
    assert train_vtoonify.main(argv) == 1
    err = capsys.readouterr().err
    run = tmp_path / "checkpoint" / "run"
    state = run / "pretrain_state.pt"
    assert re.fullmatch(rf"error: training diverged at iteration 1: non-finite loss recon=(nan|inf); nothing from it was "
                        rf"written; last good state: {re.escape(str(state))} \(after 1 iteration; --resume continues "
                        rf"from it\)\n", err), err
    assert sorted(p.name for p in run.iterdir()) == ["pretrain-00001.pt", "pretrain_state.pt"]
    saved = safe_load(state)
    assert saved["iteration"] == 1 and is_finite(saved) and is_finite(safe_load(run / "pretrain-00001.pt"))
    # a state with a NaN (written by a diverged run before the check existed) is refused on resume
    next(iter(saved["g_ema"]["encoder"].values())).view(-1)[0] = float("nan")
    torch.save(saved, tmp_path / "nan_state.pt")
    with pytest.raises(train_vtoonify.TrainingSetupError, match="nan_state.pt holds non-finite weights"):
        read_state(tmp_path / "nan_state.pt", parse(*argv), 1, torch.device("cpu"))


def test_a_non_finite_weight_is_never_written(trainer_d):
    """The checks before each save cover what is written: a NaN in the EMA model stops the model and the state
    save, one in the discriminator the state save; nothing is written."""
    out = trainer_d.state_path.parent
    for part, saves in ((trainer_d.g_ema.encoder, ("model", "state")), (trainer_d.discriminator, ("state",))):
        weight = next(part.parameters())
        kept = weight.detach().clone()
        try:
            with torch.no_grad():
                weight.view(-1)[3] = float("nan")
            if "model" in saves:
                with pytest.raises(TrainingDiverged, match=r"^training diverged after 0 iterations: non-finite weights "
                                                           r"in the EMA model; .*no training state had been saved yet$"):
                    trainer_d.save_model(None)
            with pytest.raises(TrainingDiverged, match="after 0 iterations: non-finite weights in the training state"):
                trainer_d.save_state()
        finally:
            with torch.no_grad():
                weight.copy_(kept)
        assert not list(out.glob("*.pt"))


class _TwoProcesses:
    """A process group of two for :class:`FiniteCheck`: this process, and another whose flag is given."""

    def __init__(self, other_bad: bool):
        self.other = float(other_bad)

    def sum(self, values: list[float]) -> list[float]:
        return [values[0] + self.other]


def test_every_process_stops_when_one_holds_a_non_finite_weight():
    good, bad = {"w": torch.ones(3), "step": torch.tensor(2.0), "rng": torch.zeros(4, dtype=torch.uint8)}, {
        "opt": [{"exp_avg": torch.tensor([1.0, float("inf")])}]}
    FiniteCheck(_TwoProcesses(False)).ensure(good, "the model", 2)
    with pytest.raises(TrainingDiverged, match="after 2 iterations: non-finite weights in the model"):
        FiniteCheck(_TwoProcesses(True)).ensure(good, "the model", 2)  # finite here, not on the other process
    with pytest.raises(TrainingDiverged):
        FiniteCheck(_TwoProcesses(False)).ensure(bad, "the model", 2)
    assert not is_finite({"ada": [float("nan"), 1.0]}) and is_finite({"ada": [0.5, 3]})


# ------------------------------------------------------------------------------------- state_dict
STATE_KEYS = {"iteration", "generator", "g_ema", "g_optim", "rng", "prev_wc", "sample", "stage", "backbone", "world_size",
              "settings", "discriminator", "d_optim"}


def test_trainer_state_dict_round_trip(trainer_d):
    """load_state_dict(state_dict()) restores everything the state holds, after all of it was changed; the keys are
    those state files have always had (files written before Trainer.state_dict existed resume unchanged)."""
    trainer_d.iteration = 3
    saved = copy.deepcopy(trainer_d.state_dict())
    assert set(saved) == STATE_KEYS and saved["iteration"] == 3 and saved["stage"] == "main"
    weights = [*trainer_d.generator.encoder.parameters(), *trainer_d.g_ema.fusion_out.parameters(),
               *trainer_d.discriminator.parameters()]
    with torch.no_grad():
        for p in weights:
            p.add_(1)
    trainer_d.g_optim.param_groups[0]["lr"] = trainer_d.d_optim.param_groups[0]["lr"] = 0.5
    torch.manual_seed(123)
    trainer_d.iteration, trainer_d.data.prev_wc, trainer_d.sample = 9, torch.ones(1), {"inp": torch.ones(1)}
    with pytest.raises(AssertionError):
        assert_same_tree(trainer_d.state_dict(), saved)
    trainer_d.load_state_dict(saved)
    assert_same_tree(trainer_d.state_dict(), saved)
    assert trainer_d.start == trainer_d.iteration == 3
