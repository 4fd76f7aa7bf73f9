#!/usr/bin/env bash
# aarch64 (Jetson CPU) check on an x86-64 machine: cross-compile the host C++ with Debian's
# g++-aarch64-linux-gnu and run the C++ tests under user-mode QEMU.
#
#   1. CMake with cmake/aarch64-linux-gnu.cmake, CUDA off (this nvcc targets x86-64 hosts only):
#      the CPU scan kernel (with whatever SIMD paths it has), the ONNX Runtime op library, the
#      ctest executables and the C++ runner, -Werror;
#   2. ctest through qemu-aarch64 -L /usr/aarch64-linux-gnu: every test executable except those
#      matching $REMAMBER_AARCH64_CTEST_EXCLUDE (default "kernel_emulation"): the CUDA-kernel
#      emulations model GPU code the Jetson's CPU never runs, take ~18 s natively and minutes under
#      QEMU; they are still compiled for aarch64 in step 1;
#   3. libremamber_ort_ops.so: an AArch64 ELF exporting RegisterCustomOps (linked, not run: no
#      aarch64 onnxruntime here);
#   4. the TensorRT plugins' host code (plugins/*Plugin/*.cpp) compiled, not linked, by the
#      aarch64 compiler against the fetched TensorRT headers and this machine's CUDA headers.
#
# Needs: apt-get install g++-aarch64-linux-gnu qemu-user (.ci/run installs them), and the headers
# of scripts/fetch_native_deps.sh. Build folder: $REMAMBER_AARCH64_BUILD (default /tmp/remamber-aarch64).
# Exit status: 0 all passed, 1 a step failed, 3 a tool is missing. Last line: `aarch64: ...` summary.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${REMAMBER_AARCH64_BUILD:-${TMPDIR:-/tmp}/remamber-aarch64}"
DEPS="${REMAMBER_DEPS_DIR:-$REPO/third_party}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
JOBS="${JOBS:-2}"
CTEST_EXCLUDE="${REMAMBER_AARCH64_CTEST_EXCLUDE-kernel_emulation}"

missing=()
for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake ctest; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -d /usr/aarch64-linux-gnu/lib ]] || missing+=("/usr/aarch64-linux-gnu (the aarch64 libc)")
[[ -f "$DEPS/onnxruntime/include/onnxruntime_cxx_api.h" ]] || missing+=("ONNX Runtime headers in $DEPS (scripts/fetch_native_deps.sh)")
[[ -f "$DEPS/tensorrt/include/NvInferRuntime.h" ]] || missing+=("TensorRT headers in $DEPS (scripts/fetch_native_deps.sh)")
if ((${#missing[@]})); then
  echo "cross_aarch64: missing: ${missing[*]}" >&2
  echo "cross_aarch64: apt-get install -y --no-install-recommends g++-aarch64-linux-gnu qemu-user; bash scripts/fetch_native_deps.sh" >&2
  echo "aarch64: prerequisites missing"
  exit 3
fi

status=0
step() { printf '\n==> %s\n' "$*" >&2; }

# -O2, not CMake's Release -O3: Debian 12's aarch64-linux-gnu-g++ 12.2 stops with an internal
# compiler error (vect_transform_reduction) on the float64 reference loop of test_scan_math.cpp at
# -O3. Native Jetson compilers (JetPack 6: GCC 11) are not affected.
step "configure $BUILD (aarch64, CUDA off)"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_TOOLCHAIN_FILE="$REPO/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
  -DREMAMBER_WITH_CUDA=OFF -DREMAMBER_WITH_TRT=OFF -DREMAMBER_WITH_ORT=ON -DREMAMBER_WERROR=ON \
  -DREMAMBER_DEPS_DIR="$DEPS" -DREMAMBER_LIB_INSTALL_DIR="$BUILD/install" >"$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log" >&2; echo "aarch64: configure FAILED"; exit 1; }
grep -E "ONNX Runtime op|CUDA kernel|TensorRT plugin" "$BUILD.configure.log" >&2

step "build (keep going past errors so every one is listed)"
build_ok=yes
cmake --build "$BUILD" -j"$JOBS" -- -k >"$BUILD.build.log" 2>&1 || { build_ok=no; status=1; }
grep -E "error|Error|warning" "$BUILD.build.log" | grep -v "^gmake" >&2
grep "Built target" "$BUILD.build.log" >&2

step "ctest under qemu-aarch64${CTEST_EXCLUDE:+ (not run: tests matching '$CTEST_EXCLUDE')}"
ctest_summary="not run"
exclude=()
[[ -n "$CTEST_EXCLUDE" ]] && exclude=(-E "$CTEST_EXCLUDE")
if ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" "${exclude[@]}" >"$BUILD.ctest.log" 2>&1; then
  ctest_summary="$(grep -E "tests passed" "$BUILD.ctest.log" | tail -1)"
else
  status=1
  ctest_summary="$(grep -E "tests passed|No tests were found" "$BUILD.ctest.log" | tail -1)"
  cat "$BUILD.ctest.log" >&2
fi
grep -E "Test +#" "$BUILD.ctest.log" >&2

step "ONNX Runtime op library: AArch64 ELF exporting RegisterCustomOps"
lib="$BUILD/libremamber_ort_ops.so"
elf="missing"
if [[ -f "$lib" ]]; then
  machine="$(readelf -h "$lib" | awk -F: '/Machine:/ {gsub(/^ +/, "", $2); print $2}')"
  if [[ "$machine" == "AArch64" ]] && aarch64-linux-gnu-nm -D --defined-only "$lib" | grep -q " RegisterCustomOps$"; then
    elf="AArch64, exports RegisterCustomOps"
  else
    elf="wrong: machine '$machine'"; status=1
  fi
else
  status=1
fi
echo "  $elf" >&2

step "TensorRT plugins' host code: compiled (not linked) by aarch64-linux-gnu-g++"
plugin="compiled"
if ! "$PYTHON" "$REPO/scripts/trt_header_matrix.py" --no-registry --include "$DEPS/tensorrt/include" \
     --cxx aarch64-linux-gnu-g++ --jobs "$JOBS" >"$BUILD.plugin.log" 2>&1; then
  plugin="FAILED"; status=1
  cat "$BUILD.plugin.log" >&2
fi
grep -v "^RESULT" "$BUILD.plugin.log" >&2

echo "aarch64: build $build_ok; ctest: $ctest_summary; ORT op: $elf; plugin host code: $plugin"
exit $status
