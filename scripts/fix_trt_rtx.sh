#!/usr/bin/env bash
# TensorRT-RTX wheel fix: its ONNX parser dlopens the unversioned libtensorrt_rtx.so on the first
# plugin node, which the tensorrt-rtx-cu13-libs wheel does not ship; without it the process aborts
# ("terminate called without an active exception"). Creates, in the active Python's site-packages,
#   tensorrt_rtx_libs/libtensorrt_rtx.so -> libtensorrt_rtx.so.1
# Idempotent; fails loudly when TensorRT-RTX is not installed or the link cannot be made.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"
  else PYTHON="python3"; fi
fi
LIBDIR="$("$PYTHON" - <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("tensorrt_rtx_libs")
if spec is None or not spec.submodule_search_locations:
    sys.exit("tensorrt_rtx_libs is not installed in this Python: pip install tensorrt-rtx-cu13==1.7.1.116")
print(list(spec.submodule_search_locations)[0])
PY
)" || { echo "fix_trt_rtx: error: could not locate tensorrt_rtx_libs with $PYTHON" >&2; exit 1; }
TARGET="$LIBDIR/libtensorrt_rtx.so.1"
LINK="$LIBDIR/libtensorrt_rtx.so"
[[ -f "$TARGET" ]] || { echo "fix_trt_rtx: error: $TARGET not found (broken tensorrt-rtx-cu13-libs install?)" >&2; exit 1; }
if [[ -L "$LINK" && "$(readlink "$LINK")" == "libtensorrt_rtx.so.1" ]]; then
  echo "fix_trt_rtx: $LINK already points at libtensorrt_rtx.so.1"
  exit 0
fi
if [[ -e "$LINK" && ! -L "$LINK" ]]; then
  echo "fix_trt_rtx: $LINK exists and is a real file; leaving it alone" >&2
  exit 0
fi
ln -sfn "libtensorrt_rtx.so.1" "$LINK" || { echo "fix_trt_rtx: error: cannot create $LINK (permissions?)" >&2; exit 1; }
[[ -e "$LINK" ]] || { echo "fix_trt_rtx: error: $LINK does not resolve" >&2; exit 1; }
echo "fix_trt_rtx: created $LINK -> libtensorrt_rtx.so.1"
