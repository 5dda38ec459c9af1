"""Shared test helpers: reference data paths, golden tensors and the golden tolerance rule."""
from __future__ import annotations

import ast
import csv
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

# Nothing downloads in tests: the first-run download of missing default checkpoints is off (the tests of that
# feature turn it on with a fake downloader).
os.environ.setdefault("VTOONIFY_NO_DOWNLOAD", "1")


def _share_the_cores_between_workers() -> None:
    """Under ``pytest -n N`` (pytest-xdist) each worker, and every process a test starts, gets its share of
    the cores (the suite's tensors are small: one thread each beats N workers fighting over every core)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        share = max(1, cores // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


_share_the_cores_between_workers()

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
KEYS = DATA / "keys"


@lru_cache(maxsize=None)
def golden(name: str) -> dict[str, np.ndarray]:
    """All arrays of ``golden_<name>.npz`` (``ops`` or ``models``)."""
    with np.load(GOLDEN / f"golden_{name}.npz") as f:
        return {k: f[k] for k in f.files}


def golden_case(name: str, case: str) -> dict[str, torch.Tensor]:
    """The arrays of one case, keyed by the part after ``<case>/`` (``in.x``, ``sd.weight``, ``out.0`` ...)."""
    prefix = case + "/"
    return {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in golden(name).items() if k.startswith(prefix)}


def manifest(name: str) -> list[tuple[str, tuple, str, str]]:
    """Rows (key, shape, dtype, kind) of ``keys/keys_<name>.tsv``."""
    rows = []
    with open(KEYS / f"keys_{name}.tsv", newline="") as f:
        for rec in csv.DictReader(f, delimiter="\t"):
            rows.append((rec["name"], tuple(ast.literal_eval(rec["shape"])), rec["dtype"], rec["kind"]))
    return rows


def assert_golden(actual: torch.Tensor, ref: torch.Tensor | np.ndarray, what: str = "") -> float:
    """The golden tolerance, with ``scale = max(1, std(ref))`` and ``n`` elements. Returns max|diff|.

    * max|diff| <= 1e-4 * scale (the original re-run in float64 differs from its float32 golden by ~1e-6);
    * relative L2 <= 1e-5, relative to ``max(|ref|_2, sqrt(n) * scale)``: for a dense reference this is the
      plain relative L2 (it catches small errors spread over the whole tensor that max|diff| lets pass);
      for a sparse one (a mostly-zero mask) it bounds the RMS error by 1e-5 * scale, because its own norm
      is too small to measure float32 rounding against: which kernels the convolution library picks on a
      given CPU then decides the outcome.
    """
    ref = torch.as_tensor(ref, dtype=torch.float64)
    actual = actual.detach().to(torch.float64).cpu()
    assert actual.shape == ref.shape, f"{what}: shape {tuple(actual.shape)} != reference {tuple(ref.shape)}"
    diff = (actual - ref).abs().max().item()
    scale = max(1.0, ref.std().item())
    tol = 1e-4 * scale
    rel = ((actual - ref).norm() / max(ref.norm().item(), ref.numel() ** 0.5 * scale)).item()
    assert diff <= tol and rel <= 1e-5, f"{what}: max|diff| {diff:.3g} (tol {tol:.3g}), relative L2 {rel:.3g} (tol 1e-5)"
    return diff


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


class _PspMemo:
    """The pSp encoder's output, memoised per (weights, input) for the session.

    At the released size one forward costs ~0.9 s on 2 cores, and the suite's pipelines, figures and training
    runs encode the same few crops again and again (136 images, 34 distinct, in the in-process tests). A
    repeated call gets a copy of what the encoder computed for the same weights and the same input tensor
    (bytes, shape, dtype, device): exactly what it would compute again. The weights' key, computed at every
    call (~50 ms), hashes the name, shape and a strided sample of 1024 values of every tensor, so a test that
    loads or alters other weights is not served another encoder's codes. Calls that build a graph (gradients
    on) are not memoised. ``VTOONIFY_TEST_NO_PSP_MEMO=1`` turns it off.
    """

    def __init__(self):
        self.outputs: dict[tuple, torch.Tensor] = {}

    @staticmethod
    def weights_key(module) -> str:
        import hashlib

        h = hashlib.sha1()
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            flat = t.detach().reshape(-1)
            h.update(f"{name}{tuple(t.shape)}{t.dtype}{t.device}".encode())
            h.update(flat[:: max(1, flat.numel() // 1024)].float().cpu().numpy().tobytes())
        return h.hexdigest()

    def install(self, monkeypatch) -> None:
        import hashlib

        from model.encoder.psp import ZPlusEncoder

        real = ZPlusEncoder.forward

        def forward(module, x):
            if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())):
                return real(module, x)
            data = hashlib.sha1(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()
            autocast = torch.is_autocast_enabled(x.device.type)
            key = (self.weights_key(module), data, tuple(x.shape), x.dtype, str(x.device), module.training, autocast,
                   torch.get_autocast_dtype(x.device.type) if autocast else None)
            if key not in self.outputs:
                out = real(module, x)
                with torch.inference_mode(False):
                    self.outputs[key] = out.detach().clone()
            return self.outputs[key].clone()  # made in the caller's mode, as the encoder's own output is

        monkeypatch.setattr(ZPlusEncoder, "forward", forward)


@pytest.fixture(scope="session", autouse=True)
def _psp_memo():
    if os.environ.get("VTOONIFY_TEST_NO_PSP_MEMO") == "1":
        yield None
        return
    mp = pytest.MonkeyPatch()
    memo = _PspMemo()
    memo.install(mp)
    yield memo
    mp.undo()


@pytest.fixture(scope="session")
def frozen_helpers(tmp_path_factory) -> dict[str, Path]:
    """Released-size pSp ``encoder.pt`` and BiSeNet ``faceparsing.pth`` with fill-rule weights (written once)."""
    from model.fill import write_fill_face_parser, write_fill_style_encoder

    root = tmp_path_factory.mktemp("frozen_helpers")
    return {"encoder": write_fill_style_encoder(root / "encoder.pt", GOLDEN / "fill_psp_encoder.tsv"),
            "faceparsing": write_fill_face_parser(root / "faceparsing.pth", GOLDEN / "fill_bisenet.tsv")}


def write_tiny_checkpoints(root: Path, style: str, n_styles: int = 3) -> dict[str, Path]:
    """Tiny fill-rule VToonify-D (with ``n_styles`` exemplar codes) and VToonify-T in the released layout:
    ``root/vtoonify_d_<style>/vtoonify_s_d.pt`` (+ ``exstyle_code.npy``) and ``root/vtoonify_t_<style>/vtoonify.pt``.

    They keep the released level structure and style width (so the real pSp encoder's codes fit) with tiny
    feature maps.
    """
    from model.fill import fill_module
    from model.vtoonify import VToonify
    from pipeline.styles import save_exstyle_codes

    torch.manual_seed(0)
    paths = {"d": root / f"vtoonify_d_{style}" / "vtoonify_s_d.pt", "t": root / f"vtoonify_t_{style}" / "vtoonify.pt"}
    for key, backbone in (("d", "dualstylegan"), ("t", "toonify")):
        paths[key].parent.mkdir(parents=True)
        model = fill_module(VToonify(backbone=backbone, style_channels=512, channel_multiplier=1, channel_max=32))
        torch.save({"g_ema": model.state_dict()}, paths[key])
    rng = np.random.default_rng(0)
    save_exstyle_codes(paths["d"].parent / "exstyle_code.npy",
                       {f"style{i}.jpg": rng.standard_normal((1, 18, 512)).astype(np.float32) for i in range(n_styles)})
    return paths


def assert_same_tree(a, b, path: str = "") -> None:
    """``a`` and ``b`` (nested dicts, lists and tuples of tensors and plain values, such as training states) are
    equal: the same keys in the same order, tensors of the same dtype and shape, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (path, list(a), list(b))
        for k in a:
            assert_same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}[{k}]")
    else:
        assert a == b, (path, a, b)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for servers and torchrun rendezvous in tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_image(path: Path) -> np.ndarray:
    """An image file as OpenCV reads it (BGR); fails the test if it cannot be read."""
    import cv2

    image = cv2.imread(str(path))
    assert image is not None, path
    return image


class ScriptedDetector:
    """A face detector for tracker tests: each call finds one face whose eye centres are ``half_gap`` px left
    and right of the next scripted position (``None``: no face in that frame)."""

    def __init__(self, positions, half_gap: float = 10):
        self.positions = list(positions)
        self.half_gap = half_gap

    def detect(self, frame):
        from pipeline.faces import Face

        position = self.positions.pop(0)
        if position is None:
            return []
        lm = np.zeros((68, 2))
        lm[36:42] = np.asarray(position) - (self.half_gap, 0)
        lm[42:48] = np.asarray(position) + (self.half_gap, 0)
        return [Face(box=(0, 0, 10, 10), score=1.0, landmarks=lm)]


# ------------------------------------------------------------- the end-to-end tests' checkpoints and inputs
#: Exemplar styles of the fill-rule VToonify-D test model.
N_STYLES = 3


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, frozen_helpers) -> Path:
    """A checkpoint/ folder in the released layout, filled with deterministic weights."""
    root = tmp_path_factory.mktemp("checkpoint")
    write_tiny_checkpoints(root, "test", N_STYLES)
    for name in ("encoder", "faceparsing"):
        (root / frozen_helpers[name].name).symlink_to(frozen_helpers[name])
    return root


def model_path(ckpt: Path, backbone: str = "dualstylegan") -> Path:
    return ckpt / ("vtoonify_d_test/vtoonify_s_d.pt" if backbone == "dualstylegan" else "vtoonify_t_test/vtoonify.pt")


def make_pipeline(ckpt: Path, backbone: str = "dualstylegan", **kwargs):
    """The Python API on the same checkpoints as :func:`run` (CPU)."""
    from pipeline.stylize import VToonifyPipeline

    return VToonifyPipeline(model_path(ckpt, backbone), style_encoder_path=ckpt / "encoder.pt",
                            faceparsing_path=ckpt / "faceparsing.pth", device="cpu", **kwargs)


@pytest.fixture(scope="module")
def pipe_d(ckpt):
    """The Python API on the CLI's VToonify-D checkpoint (loaded once for the comparisons below)."""
    return make_pipeline(ckpt)


@pytest.fixture(scope="session")
def astronaut_jpg(tmp_path_factory) -> Path:
    import cv2
    from skimage import data as skdata

    path = tmp_path_factory.mktemp("inputs") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def astronaut_video(tmp_path_factory) -> Path:
    from skimage import data as skdata

    from pipeline.video import synthesize_test_video

    path = tmp_path_factory.mktemp("inputs") / "astro.mp4"
    return synthesize_test_video(path, skdata.astronaut(), n_frames=6, fps=10, size=(384, 384), motion="zoom")


# ------------------------------------------------------------------------------------------- ONNX engines
@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Tiny VToonify-D / -T and the released-size BiSeNet, each exported once per session into an export cache: D
    and T through the cache (first use), BiSeNet through the command line straight to its cache entry. The files are
    byte for byte those of :func:`ckpt` and :func:`frozen_helpers`, so any test that runs those through an ONNX
    engine with this cache folder (``exported["cache"].folder``) exports nothing."""
    import contextlib
    import io

    from model.fill import write_fill_face_parser
    from pipeline.engines import export as export_module
    from pipeline.engines.cache import ExportCache

    root = tmp_path_factory.mktemp("engines")
    ckpts = write_tiny_checkpoints(root, "engines")
    ckpts["parser"] = write_fill_face_parser(root / "faceparsing.pth", GOLDEN / "fill_bisenet.tsv")
    notices: list[str] = []
    cache = ExportCache(root / "cache", notice=notices.append)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = export_module.main([str(ckpts["parser"]), "--output", str(cache.entry(ckpts["parser"])), "--check",
                                     "openvino"])
    paths = {key: cache.get(ckpts[key]) for key in ("d", "t")}
    paths["parser"] = cache.get(ckpts["parser"])  # the command line's file: no export
    return {"ckpt": ckpts, "onnx": paths, "cache": cache, "notices": notices, "cli": (status, out.getvalue())}
