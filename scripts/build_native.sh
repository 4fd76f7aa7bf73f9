#!/usr/bin/env bash
# Build and install the native libraries (ONNX Runtime op, CUDA kernel, TensorRT plugin) into
# remamber/lib/, where remamber.native finds them. Works from a fresh clone once the venv exists:
#   bash scripts/build_native.sh [extra cmake -D options...]
# Environment: BUILD_DIR (default ./build), REMAMBER_DEPS_DIR (fetched headers, default ./third_party),
# TensorRT_ROOT / ONNXRUNTIME_ROOT (your own SDKs), CMAKE_CUDA_ARCHITECTURES via -D, JOBS (default nproc),
# REMAMBER_SKIP_FETCH=1 (do not fetch headers), REMAMBER_SKIP_TRT_RTX_FIX=1 (do not touch the venv).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
JOBS="${JOBS:-$(nproc)}"
cd "$REPO_ROOT"
command -v cmake >/dev/null || { echo "build_native: error: cmake not found (apt-get install cmake)" >&2; exit 1; }

if [[ "${REMAMBER_SKIP_FETCH:-0}" != "1" ]]; then
  bash "$REPO_ROOT/scripts/fetch_native_deps.sh" >/dev/null
fi

# The TensorRT-RTX wheel needs the libtensorrt_rtx.so symlink for its ONNX parser (TOOLCHAIN.md).
if [[ "${REMAMBER_SKIP_TRT_RTX_FIX:-0}" != "1" ]]; then
  PY="${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}"
  PY="${PY:-$REPO_ROOT/.venv/bin/python}"
  if [[ -x "$PY" ]] && "$PY" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('tensorrt_rtx_libs') is None)" 2>/dev/null; then
    PYTHON="$PY" bash "$REPO_ROOT/scripts/fix_trt_rtx.sh"
  fi
fi

GEN=()
if command -v ninja >/dev/null && [[ ! -f "$BUILD_DIR/Makefile" ]]; then GEN=(-G Ninja); fi
start=$(date +%s)
mkdir -p "$BUILD_DIR"
# Configure and build output is kept in $BUILD_DIR/build.log: tests/test_native_build.py greps it
# for compiler warnings (CI builds with -DREMAMBER_WERROR=ON as well).
{
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$BUILD_DIR" -j "$JOBS"
} 2>&1 | tee "$BUILD_DIR/build.log"
[[ "${PIPESTATUS[0]}" == "0" ]] || { echo "build_native: error: the build failed (log: $BUILD_DIR/build.log)" >&2; exit 1; }
cmake --install "$BUILD_DIR"
if [[ -f "$BUILD_DIR/CTestTestfile.cmake" ]]; then
  (cd "$BUILD_DIR" && ctest --output-on-failure)
fi
end=$(date +%s)
echo
cat "$BUILD_DIR/summary.txt" 2>/dev/null || true
echo "build_native: configure + build + install took $((end - start)) s; libraries:"
ls -1 "$REPO_ROOT/remamber/lib/"*.so 2>/dev/null || echo "  (none installed)"
