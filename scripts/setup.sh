#!/usr/bin/env bash
# Set up remamber-deploy on a fresh machine (idempotent: a second run only checks):
#   1. a virtual environment (.venv, or $REMAMBER_VENV) with the package installed editable,
#   2. the test-only references: mamba-ssm without its CUDA build, the CLIP BPE vocabulary file,
#   3. the native build: headers fetched into third_party/, CMake build, libraries into remamber/lib/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=${REMAMBER_VENV:-.venv}
CONSTRAINTS=scripts/constraints-cpu.txt

step() { printf '\n==> %s\n' "$*" >&2; }

step "virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel

step "Python packages (pinned by $CONSTRAINTS)"
python -m pip install -q -c "$CONSTRAINTS" -e ".[trt-rtx,test]"
# Triton serving (extra `serve`, used by `serve`, `serve-bench` and their tests). nvidia-pytriton 0.7.0
# declares numpy<2 while the project pins NumPy 2: install it without dependencies, then its dependencies,
# then the NumPy-1 environment its Python-backend stub runs in (serve/environment.py explains why).
python -m pip install -q -c "$CONSTRAINTS" --no-deps "nvidia-pytriton"
python -m pip install -q -c "$CONSTRAINTS" "tritonclient[http,grpc]" pyzmq sh typing_inspect wrapt typer importlib_metadata
if [ ! -x "$VENV/triton-stub-env/bin/python3" ]; then
    python -m venv --without-pip "$VENV/triton-stub-env"
fi
python -m pip --python "$VENV/triton-stub-env/bin/python3" install -q -r serve/stub-requirements.txt
# open_clip_torch only for the CLIP BPE vocabulary file inside its wheel; its dependencies
# (torchvision among them) are neither needed nor importable beside the CPU torch.
python -m pip install -q --no-deps "open_clip_torch==3.3.0"
# Triton for the triton scan backend; on the CPU its interpreter (TRITON_INTERPRET=1) runs the kernels in the
# tests. The CPU torch wheel does not depend on it, so it is installed by name (a no-op once present).
python -m pip install -q -c "$CONSTRAINTS" triton
# mamba-ssm's pure-PyTorch selective_scan_ref is an independent reference for the tests;
# its CUDA extension cannot be built here (TOOLCHAIN.md).
if ! python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('mamba_ssm') is None)"; then
    MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE \
        python -m pip install -q --no-deps --no-build-isolation "mamba-ssm==2.3.2.post1"
fi

step "native build (fetches headers into third_party/, builds, installs into remamber/lib/, runs ctest)"
# Warnings are errors here: the kernels must compile cleanly for every default architecture.
bash scripts/build_native.sh -DREMAMBER_WERROR=ON

step "ready: $(remamber-deploy --version)"
