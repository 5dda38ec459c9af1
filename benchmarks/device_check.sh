#!/usr/bin/env bash
# Everything that needs a GPU, in at most 8 minutes on one GPU: the CUDA op tests, fp32/fp16/bf16
# throughput of VToonify-D/-T (eager and --compile reduce-overhead) with PSNR against fp32 and peak CUDA
# memory, a 20-step bf16-autocast training smoke run of both backbones, and one VToonify-D forward per engine
# (torch fp32/fp16/fp16+compile, ONNX Runtime CUDA fp32, ONNX Runtime TensorRT fp16; an engine whose package,
# onnxruntime-gpu or tensorrt, is not installed is reported as such) (benchmarks/device_check.py says what each
# part measures). Writes device_check.json and device_check.md to $OUT if set, else to
# output/device_check/, and prints PASS/FAIL for the goal (>= 50 frames/s of VToonify-D 256->1024 in
# fp16 within 35 dB of fp32).
#
#   bash benchmarks/device_check.sh                 # on the GPU machine
#   bash benchmarks/device_check.sh --small         # tiny sizes on CPU, seconds to minutes
#
# Extra arguments go to benchmarks/device_check.py. The CUDA extensions are compiled on first use by
# model/stylegan/op/_cuda_build.py (needs nvcc; without it the reference ops are used and the op tests
# of the kernels fail, which the report shows).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-output/device_check}
mkdir -p "$OUT_DIR"
PYTHON=${PYTHON:-python}
# 8 minutes in all: the script leaves out rows that would start after --budget_s (default 420 s);
# the timeout is the hard stop.
exec timeout --kill-after=10 480 "$PYTHON" benchmarks/device_check.py --out "$OUT_DIR" "$@"
