"""Measured try: Winograd F(4x4, 3x3) convolutions in plain PyTorch against oneDNN's direct convolution.

    python benchmarks/experiments/winograd_experiment.py            # the 3x3 layer shapes of VToonify at 392x360 input
    python benchmarks/experiments/winograd_experiment.py --native   # also with C++ tile transforms (needs g++; ~20 s build)

Winograd F(4x4, 3x3) needs 36 multiplications per 4x4 output tile and channel pair instead of 144 (4x fewer):
input tiles 6x6 -> B^T d B, filters -> G g G^T, 36 GEMMs of (tiles x C_in) @ (C_in x C_out), outputs A^T m A.
Here the transforms are small matrix products over strided views and the GEMMs one ``torch.bmm``, i.e. what
can be had without a native kernel. For each shape the script prints the direct convolution's time and
FLOP rate, the Winograd time split into its parts, the speed-up and the relative error (it asserts the
result is within the project's float tolerance of the direct convolution), then the rates of the GEMM
routes PyTorch offers on this machine. ``--native`` adds the same algorithm with the tile transforms as a small
C++/OpenMP kernel (``benchmarks/experiments/winograd_native.cpp``, built into a temporary folder) and the 36 GEMMs
through oneDNN (its matmul, and 1x1 convolutions), which is what a production version would look like.

Result on the 2-core AVX-512 (AMD EPYC) CI machine type: see benchmarks/README.md ("Winograd").
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

# F(4x4, 3x3) transforms (Lavin & Gray 2016, points 0, +-1, +-2)
BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float32)
G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float32)
AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float32)

# (C_in, C_out, H, W) of the 3x3 stride-1 convolutions that dominate VToonify at the sample video's size
SHAPES = [(512, 512, 49, 45), (512, 512, 98, 90), (1024, 512, 98, 90), (256, 256, 196, 180), (512, 256, 196, 180),
          (256, 128, 392, 360), (128, 128, 392, 360), (64, 64, 784, 720)]


def filter_transform(w: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (36, C_in, C_out)."""
    return torch.einsum("ia,oqab,jb->ijqo", G, w, G).reshape(36, w.shape[1], w.shape[0]).contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, parts: dict | None = None) -> torch.Tensor:
    """3x3 convolution, stride 1, padding 1, of a channels-last ``x`` with transformed filters ``u``."""
    clock = time.perf_counter
    t = clock()
    n, c, h, w = x.shape
    co = u.shape[2]
    th, tw = -(-h // 4), -(-w // 4)
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * 4 + 1 - w, 1, th * 4 + 1 - h))  # (N, 4th+2, 4tw+2, C)
    wp = xp.shape[2]
    rows = xp.as_strided((n, th, 6, wp * c), (xp.stride(0), 4 * wp * c, wp * c, 1))  # overlapping 6-row bands
    t1 = torch.matmul(BT, rows)  # B^T along the rows: (N, th, 6, Wp*C)
    cols = t1.as_strided((n, th, 6, tw, 6, c), (th * 6 * wp * c, 6 * wp * c, wp * c, 4 * c, c, 1))
    v = torch.einsum("jb,nhiwbc->ijnhwc", BT, cols).reshape(36, n * th * tw, c)  # B along the columns
    t_in = clock()
    m = torch.bmm(v, u)  # 36 GEMMs: (tiles, C_in) @ (C_in, C_out)
    t_gemm = clock()
    z = torch.matmul(AT, m.view(6, -1)).view(4, 6, -1)
    y = torch.matmul(AT, z).view(4, 4, n, th, tw, co).permute(2, 3, 0, 4, 1, 5).reshape(n, th * 4, tw * 4, co)
    out = y[:, :h, :w].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    if parts is not None:
        parts["input transform"] = t_in - t
        parts["GEMM"] = t_gemm - t_in
        parts["output transform"] = clock() - t_gemm
    return out


def best_of(fn, n: int = 5) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def native_rows(shapes) -> None:
    """The --native table: C++ tile transforms + 36 oneDNN GEMMs against the direct convolution."""
    import tempfile
    from pathlib import Path

    from torch.utils.cpp_extension import load

    build = tempfile.mkdtemp(prefix="winograd_native_")
    t0 = time.perf_counter()
    ext = load("winograd_native", [str(Path(__file__).with_name("winograd_native.cpp"))], build_directory=build,
               extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)
    print(f"\nNative tile transforms (built in {time.perf_counter() - t0:.0f} s), bias included, 36 GEMMs through oneDNN:")
    print("| C_in -> C_out, H x W | direct ms | input / output transform ms | oneDNN matmul: ms, speed-up | "
          "oneDNN 1x1 conv: ms, speed-up | rel. error |")
    print("|---|---|---|---|---|---|")

    def run(x, u_lin, u_conv, bias, gemm):
        n, c, h, w = x.shape
        v = ext.input_transform(x.permute(0, 2, 3, 1))  # (36, tiles, C_in)
        if gemm == "matmul":
            m = torch.stack([torch.ops.mkldnn._linear_pointwise(v[k], u_lin[k], None, "none", [], "") for k in range(36)])
        else:
            p = v.shape[1]
            m = torch.stack([F.conv2d(v[k].view(1, p, 1, c).permute(0, 3, 1, 2), u_conv[k]).view(-1, p).t()
                             for k in range(36)])
        return ext.output_transform(m.contiguous(), n, h, w, bias).permute(0, 3, 1, 2)

    for c, co, h, w in shapes:
        x = torch.randn(1, c, h, w).contiguous(memory_format=torch.channels_last)
        weight, bias = torch.randn(co, c, 3, 3) / math.sqrt(9 * c), torch.randn(co)
        u_lin = filter_transform(weight).transpose(1, 2).contiguous()  # (36, C_out, C_in)
        u_conv = [u_lin[k].view(co, c, 1, 1) for k in range(36)]
        ref = F.conv2d(x, weight, bias, padding=1)
        t_direct = best_of(lambda: F.conv2d(x, weight, bias, padding=1))
        v = ext.input_transform(x.permute(0, 2, 3, 1))
        m = torch.randn(36, v.shape[1], co)
        t_in = best_of(lambda: ext.input_transform(x.permute(0, 2, 3, 1)))
        t_out = best_of(lambda: ext.output_transform(m, 1, h, w, bias))
        cells, err = [], 0.0
        for gemm in ("matmul", "conv"):
            out = run(x, u_lin, u_conv, bias, gemm)
            err = max(err, ((out - ref).abs().max() / ref.abs().max()).item())
            t = best_of(lambda: run(x, u_lin, u_conv, bias, gemm))
            cells.append(f"{1e3 * t:.1f}, {t_direct / t:.2f}x")
        assert err < 1e-4, f"native Winograd result off by {err:.2g}"
        print(f"| {c} -> {co}, {h} x {w} | {1e3 * t_direct:.1f} | {1e3 * t_in:.1f} / {1e3 * t_out:.1f} "
              f"| {cells[0]} | {cells[1]} | {err:.1e} |")


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--native", action="store_true", help="also time C++ tile transforms + oneDNN GEMMs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| C_in -> C_out, H x W | direct ms (GFLOP/s) | Winograd ms: input / GEMM / output | speed-up | rel. error |")
    print("|---|---|---|---|---|")
    for c, co, h, w in SHAPES:
        x = torch.randn(1, c, h, w).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(co, c, 3, 3) / math.sqrt(9 * c)
        u = filter_transform(weight)
        ref = F.conv2d(x, weight, padding=1)
        out = winograd_conv3x3(x, u)
        err = ((out - ref).abs().max() / ref.abs().max()).item()
        assert err < 1e-4, f"Winograd result off by {err:.2g}"
        t_direct = best_of(lambda: F.conv2d(x, weight, padding=1))
        t_wino = best_of(lambda: winograd_conv3x3(x, u))
        parts: dict = {}
        winograd_conv3x3(x, u, parts)
        gflop = 2 * c * co * 9 * h * w / 1e9
        split = " / ".join(f"{1e3 * parts[k]:.1f}" for k in ("input transform", "GEMM", "output transform"))
        print(f"| {c} -> {co}, {h} x {w} | {1e3 * t_direct:.1f} ({gflop / t_direct:.0f}) | {1e3 * t_wino:.1f}: {split} "
              f"| {t_direct / t_wino:.2f}x | {err:.1e} |")

    print("\nGEMM rates of the Winograd products (36 x (tiles x C_in) @ (C_in x C_out)), GFLOP/s:")
    print("| tiles, C_in, C_out | torch.bmm (MKL) | 36 x torch.mm | 36 x oneDNN linear | 36 x oneDNN 1x1 conv |")
    print("|---|---|---|---|---|")
    for p, c, co in [(156, 512, 512), (575, 512, 512), (2205, 256, 256), (8820, 128, 128)]:
        v, u = torch.randn(36, p, c), torch.randn(36, c, co)
        gflop = 36 * p * c * co * 2 / 1e9
        wt = [u[i].t().contiguous() for i in range(36)]
        xs = [v[i].view(1, p, 1, c).permute(0, 3, 1, 2) for i in range(36)]
        ws = [t.view(co, c, 1, 1) for t in wt]
        rates = [gflop / best_of(lambda: torch.bmm(v, u)), gflop / best_of(lambda: [torch.mm(v[i], u[i]) for i in range(36)])]
        try:
            linear = torch.ops.mkldnn._linear_pointwise
            rates.append(gflop / best_of(lambda: [linear(v[i], wt[i], None, "none", [], "") for i in range(36)]))
        except (RuntimeError, AttributeError):
            rates.append(float("nan"))
        rates.append(gflop / best_of(lambda: [F.conv2d(xs[i], ws[i]) for i in range(36)]))
        print(f"| {p}, {c}, {co} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    if args.native:
        native_rows(SHAPES)


if __name__ == "__main__":
    main()
