#!/usr/bin/env bash
# Fetch the headers the native build needs when the machine has no TensorRT / ONNX Runtime SDK:
#   - TensorRT 10.x headers (Apache-2.0) carried by the PyPI package kernel-lens==2.0.1 (MIT),
#     downloaded with `pip download --no-deps` (its declared dependencies would pull torch/triton);
#   - ONNX Runtime C/C++ headers from Debian trixie's libonnxruntime-dev, downloaded through a
#     private apt configuration (own sources list, own state and cache dirs) so the system's apt
#     setup is never touched.
# Output (git-ignored): ${REMAMBER_DEPS_DIR:-<repo>/third_party}/{tensorrt/include,onnxruntime/include}.
# Idempotent: a dependency whose headers are already there is skipped. Fails loudly on any error.
# Users with a real TensorRT or ORT install point TensorRT_ROOT / ONNXRUNTIME_ROOT at it instead.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS_DIR="${REMAMBER_DEPS_DIR:-$REPO_ROOT/third_party}"
KERNEL_LENS_VERSION="2.0.1"
ORT_DEB_SUITE="trixie"

die() { echo "fetch_native_deps: error: $*" >&2; exit 1; }
info() { echo "fetch_native_deps: $*" >&2; }

mkdir -p "$DEPS_DIR" || die "cannot create $DEPS_DIR (set REMAMBER_DEPS_DIR to a writable folder)"
WORK="$(mktemp -d "${DEPS_DIR}/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Python with pip: the active venv, else the repo's .venv, else python3.
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"
  else PYTHON="python3"; fi
fi

# ---- TensorRT headers ---------------------------------------------------------------------------
TRT_INC="$DEPS_DIR/tensorrt/include"
if [[ -f "$TRT_INC/NvInferRuntime.h" && -f "$TRT_INC/NvInferVersion.h" ]]; then
  info "TensorRT headers already present in $TRT_INC"
else
  info "downloading kernel-lens==$KERNEL_LENS_VERSION (TensorRT headers) from PyPI"
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --dest "$WORK/kl" "kernel-lens==$KERNEL_LENS_VERSION" >&2 \
    || die "pip download kernel-lens==$KERNEL_LENS_VERSION failed (is PyPI reachable?)"
  WHEEL="$(ls "$WORK"/kl/kernel_lens-*.whl 2>/dev/null | head -n1)"
  [[ -n "$WHEEL" ]] || die "no kernel_lens wheel in $WORK/kl"
  # Unpack only kernel_lens/include/tensorrt/* (a wheel is a zip; Python's zipfile avoids needing unzip).
  "$PYTHON" - "$WHEEL" "$WORK/trt" <<'EOF' || die "could not unpack the TensorRT headers from the kernel-lens wheel"
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "kernel_lens/include/tensorrt/"
n = 0
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
            n += 1
if n == 0:
    sys.exit("kernel-lens wheel has no " + prefix)
print(f"fetch_native_deps: unpacked {n} TensorRT header files", file=sys.stderr)
EOF
  [[ -f "$WORK/trt/NvInferRuntime.h" ]] || die "kernel-lens did not contain NvInferRuntime.h"
  rm -rf "$DEPS_DIR/tensorrt"
  mkdir -p "$DEPS_DIR/tensorrt"
  mv "$WORK/trt" "$TRT_INC"
  info "TensorRT headers -> $TRT_INC"
fi

# ---- ONNX Runtime headers -----------------------------------------------------------------------
ORT_INC="$DEPS_DIR/onnxruntime/include"
if [[ -f "$ORT_INC/onnxruntime_c_api.h" && -f "$ORT_INC/onnxruntime_lite_custom_op.h" ]]; then
  info "ONNX Runtime headers already present in $ORT_INC"
else
  command -v apt-get >/dev/null || die "apt-get not found: set ONNXRUNTIME_ROOT to an ONNX Runtime install with include/onnxruntime_c_api.h"
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found: set ONNXRUNTIME_ROOT to an ONNX Runtime install"
  # Reuse the Debian archive URI the machine already uses (mirrors differ between sites).
  URI="$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -o -E 'https?://[^ ]*/debian/?' | grep -v security | head -n1 || true)"
  URI="${URI:-http://deb.debian.org/debian}"
  KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
  [[ -f "$KEYRING" ]] || die "$KEYRING missing: install debian-archive-keyring or set ONNXRUNTIME_ROOT"
  APT="$WORK/apt"
  mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/etc" "$APT/deb"
  : > "$APT/status"
  echo "deb [signed-by=$KEYRING] $URI $ORT_DEB_SUITE main" > "$APT/etc/sources.list"
  APT_OPTS=(
    -o "Dir::Etc::sourcelist=$APT/etc/sources.list"
    -o "Dir::Etc::sourceparts=/nonexistent"
    -o "Dir::State=$APT"
    -o "Dir::State::lists=$APT/lists"
    -o "Dir::State::status=$APT/status"
    -o "Dir::Cache=$APT/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
    -o "APT::Architecture=$(dpkg --print-architecture)"
  )
  info "apt-get update (private config, suite $ORT_DEB_SUITE from $URI)"
  apt-get "${APT_OPTS[@]}" update -qq >&2 || die "private apt-get update for $ORT_DEB_SUITE failed"
  info "apt-get download libonnxruntime-dev"
  (cd "$APT/deb" && apt-get "${APT_OPTS[@]}" download libonnxruntime-dev >&2) || die "apt-get download libonnxruntime-dev failed"
  DEB="$(ls "$APT"/deb/libonnxruntime-dev_*.deb 2>/dev/null | head -n1)"
  [[ -n "$DEB" ]] || die "libonnxruntime-dev .deb not downloaded"
  dpkg-deb -x "$DEB" "$WORK/ortdeb" || die "dpkg-deb -x $DEB failed"
  HDR="$(dirname "$(find "$WORK/ortdeb" -name onnxruntime_c_api.h | head -n1)")"
  [[ -f "$HDR/onnxruntime_c_api.h" && -f "$HDR/onnxruntime_lite_custom_op.h" ]] || die "libonnxruntime-dev has no onnxruntime_c_api.h / onnxruntime_lite_custom_op.h"
  rm -rf "$DEPS_DIR/onnxruntime"
  mkdir -p "$ORT_INC"
  cp "$HDR"/*.h "$ORT_INC/"
  basename "$DEB" > "$DEPS_DIR/onnxruntime/SOURCE"
  info "ONNX Runtime headers ($(basename "$DEB")) -> $ORT_INC"
fi

echo "$DEPS_DIR"
