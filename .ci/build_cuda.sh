#!/usr/bin/env bash
# Compile the CUDA extensions of the custom ops (model/stylegan/op/cuda/) for sm_80 and sm_90 on a
# machine without a GPU, with the project's own builder (model/stylegan/op/_cuda_build.py), then
# import the built modules in a fresh process and check that a call with a CPU tensor is refused by
# our own argument check. Fails on any build error and on any compiler warning that points into our
# sources.
#
# Toolchain, in a virtual environment of its own (the test environment keeps its CPU build of torch):
#   torch 2.13.0 CUDA build (torch.version.cuda 13.0) from the default package index, and NVIDIA's
#   CUDA 13.0 compiler from the package registry: cuda-toolkit[nvcc,cudart,cccl]==13.0.3.0.
# The local pip configuration (config files, PIP_* variables such as a find-links folder with a CPU
# wheel of torch) is bypassed for that environment only.
#
# Caches (kept between runs where the machine keeps $VTOONIFY_CUDA_CI_CACHE, default
# ${XDG_CACHE_HOME:-~/.cache}/vtoonify-cuda-ci):
#   pip/                 downloaded wheels (pip's own cache),
#   venv-<versions>/     the environment, reused once complete (a marker file says so),
#   ext/<name>-<hash>/   builds that passed the checks; the hash covers the sources, torch and CUDA
#                        versions, flags and target architectures, so any change is built afresh.
#
# Locally the whole step is skipped with VTOONIFY_SKIP_CUDA_BUILD=1; under CI (CI=true) setting it is
# an error: CI always builds.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

TORCH_VERSION=2.13.0
TORCH_CUDA_TAG=cu130
CUDA_TOOLKIT_VERSION=13.0.3.0
ARCHS="8.0;9.0"
SKIP_VAR=VTOONIFY_SKIP_CUDA_BUILD

# Warnings whose location is one of our source files (gcc "file:line:col: warning", nvcc
# "file(line): warning"); warnings inside torch's or CUDA's headers are not ours to fix.
our_warnings() {
    grep -E "^($REPO/model/stylegan/op/cuda/|[^ ]*model/stylegan/op/cuda/)[^ :(]+(:[0-9]+(:[0-9]+)?:|\([0-9]+\):) *warning" "$1" || true
}
# `.ci/build_cuda.sh --check-log FILE` prints the lines of a build log that the build would fail on.
if [ "${1:-}" = --check-log ]; then
    our_warnings "$2"
    exit 0
fi

if [ -n "${!SKIP_VAR:-}" ] && [ "${!SKIP_VAR}" != 0 ]; then
    if [ "${CI:-}" = true ]; then
        echo "build_cuda: $SKIP_VAR is set but CI=true; CI never skips the CUDA build" >&2
        exit 1
    fi
    echo "build_cuda: skipped ($SKIP_VAR=${!SKIP_VAR})"
    exit 0
fi

start=$(date +%s)
CACHE=${VTOONIFY_CUDA_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vtoonify-cuda-ci}
PYTHON=${PYTHON:-python3}
PY_TAG=$("$PYTHON" -c 'import sys; print(f"py{sys.version_info[0]}.{sys.version_info[1]}")')
VENV="$CACHE/venv-torch$TORCH_VERSION-$TORCH_CUDA_TAG-cudatk$CUDA_TOOLKIT_VERSION-$PY_TAG"
mkdir -p "$CACHE/pip" "$CACHE/ext"

# pip without this machine's configuration: no config files, no PIP_* variables, default index.
clean_pip() {
    env $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/-u \1/p') \
        PIP_CONFIG_FILE=/dev/null PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$VENV/bin/python" -m pip "$@"
}

if [ ! -f "$VENV/.complete" ]; then
    echo "build_cuda: creating $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    clean_pip install --quiet --upgrade pip
    clean_pip install --quiet "torch==$TORCH_VERSION" "cuda-toolkit[nvcc,cudart,cccl]==$CUDA_TOOLKIT_VERSION" \
        ninja numpy
    touch "$VENV/.complete"
fi

# CUDA_HOME as torch's builder expects it (bin/nvcc, include/, lib64/), made of links into the wheel. The
# wheel ships only libcudart.so.13; the linker's -lcudart needs the unversioned name next to it.
CU13=$("$VENV/bin/python" -c 'import nvidia, pathlib; print(pathlib.Path(nvidia.__path__[0]) / "cu13")')
export CUDA_HOME="$VENV/cuda_home"
rm -rf "$CUDA_HOME"
mkdir -p "$CUDA_HOME/lib64"
ln -s "$CU13/bin" "$CUDA_HOME/bin"
ln -s "$CU13/include" "$CUDA_HOME/include"
ln -s "$CU13"/lib/* "$CUDA_HOME/lib64/"
ln -s libcudart.so.13 "$CUDA_HOME/lib64/libcudart.so"
export PATH="$CUDA_HOME/bin:$PATH"
export TORCH_CUDA_ARCH_LIST="$ARCHS" MAX_JOBS=${MAX_JOBS:-1} VTOONIFY_EXT_CACHE="$CACHE/ext"
unset VTOONIFY_OPS
"$VENV/bin/python" -c 'import torch; print("build_cuda: torch", torch.__version__, "cuda", torch.version.cuda)'
"$CUDA_HOME/bin/nvcc" --version | tail -n 2

# Build every extension whose build directory has not passed the checks before. A build directory
# without the marker (a failed or warning build, an interrupted one) is removed so that everything is
# compiled again and every warning shows in the log.
LOG=$(mktemp "${TMPDIR:-/tmp}/vtoonify_cuda_build.XXXXXX.log")
trap 'rm -f "$LOG"' EXIT
PENDING=$(cd "$REPO" && "$VENV/bin/python" - <<'EOF'
import shutil
from model.stylegan.op import _cuda_build
for name in _cuda_build.EXTENSIONS:
    build_dir = _cuda_build.build_directory(name)
    if not (build_dir / ".ci-passed").is_file():
        shutil.rmtree(build_dir, ignore_errors=True)
        print(name)
EOF
)
for name in $PENDING; do
    echo "build_cuda: compiling $name for sm_${ARCHS//;/, sm_} (MAX_JOBS=$MAX_JOBS)"
    if ! (cd "$REPO" && "$VENV/bin/python" -c "
from model.stylegan.op import _cuda_build
_cuda_build.build_extension('$name', verbose=True)
") >>"$LOG" 2>&1; then
        cat "$LOG"
        echo "build_cuda: FAILED: building $name" >&2
        exit 1
    fi
done

OURS=$(our_warnings "$LOG")
if [ -n "$OURS" ]; then
    cat "$LOG"
    echo "build_cuda: FAILED: compiler warnings in our sources:" >&2
    echo "$OURS" >&2
    exit 1
fi
if [ -n "$PENDING" ]; then
    echo "build_cuda: compiled with no warning from our sources ($(grep -ci 'warning' "$LOG" || true) warning lines in all)"
fi

# Import check in a fresh process that sees no GPU: the modules load, and a CPU tensor is refused by
# our own argument check (not by a missing symbol or a crash).
(cd "$REPO" && CUDA_VISIBLE_DEVICES="" "$VENV/bin/python" - <<'EOF'
import torch
from model.stylegan.op import _cuda_build

assert not torch.cuda.is_available()
up = _cuda_build.build_extension("upfirdn2d")
act = _cuda_build.build_extension("fused_bias_act")
x = torch.zeros(1, 1, 4, 4)
checks = [
    (lambda: up.upfirdn2d(x, torch.ones(2, 2), 1, 1, 1, 1, 0, 0, 0, 0), "upfirdn2d: x must be a CUDA tensor"),
    (lambda: act.fused_bias_act(x, torch.zeros(1), 0.2, 2**0.5), "fused_bias_act: x must be a CUDA tensor"),
]
for call, expected in checks:
    try:
        call()
    except RuntimeError as error:
        if expected not in str(error):
            raise SystemExit(f"build_cuda: FAILED: unexpected error {error!r}")
    else:
        raise SystemExit(f"build_cuda: FAILED: a CPU tensor was accepted ({expected!r} expected)")
print("build_cuda: both modules import without a GPU and refuse CPU tensors with our own check")
EOF
)

for name in $PENDING; do
    (cd "$REPO" && "$VENV/bin/python" -c "
from model.stylegan.op import _cuda_build
(_cuda_build.build_directory('$name') / '.ci-passed').touch()
")
done
echo "build_cuda: OK in $(( $(date +%s) - start )) s"
