"""remamber.native (library lookup, env overrides, the `native` subcommand) and the native build's
own checks: the C++ unit test of the shared scan maths and a compiler-warning grep of the build log."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

from remamber import native
from remamber.cli import main as cli_main
from remamber.errors import NativeLibraryError

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD = REPO / "build"


def test_unknown_kind_is_refused():
    with pytest.raises(NativeLibraryError, match="unknown native library kind 'onnx'"):
        native.library_path("onnx")


def test_missing_library_names_search_paths_and_build_command(monkeypatch, tmp_path):
    monkeypatch.delenv("REMAMBER_CUDA_LIB", raising=False)
    monkeypatch.setattr(native, "_search_dirs", lambda: [tmp_path / "lib", tmp_path / "build"])
    with pytest.raises(NativeLibraryError) as info:
        native.library_path("cuda")
    msg = str(info.value)
    assert "libremamber_scan_cuda.so" in msg and str(tmp_path / "lib") in msg
    assert "bash scripts/build_native.sh" in msg and "REMAMBER_CUDA_LIB" in msg


def test_env_override_wins_and_must_exist(monkeypatch, tmp_path):
    fake = tmp_path / "custom.so"
    fake.write_bytes(b"\x7fELF")
    monkeypatch.setenv("REMAMBER_TRT_PLUGIN_LIB", str(fake))
    assert native.library_path("trt") == fake.resolve()
    monkeypatch.setenv("REMAMBER_TRT_PLUGIN_LIB", str(tmp_path / "nope.so"))
    with pytest.raises(NativeLibraryError, match="REMAMBER_TRT_PLUGIN_LIB=.*does not name a file"):
        native.library_path("trt")


def test_cli_native_reports_every_library(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(native, "_search_dirs", lambda: [tmp_path])
    for var in ("REMAMBER_ORT_LIB", "REMAMBER_TRT_PLUGIN_LIB", "REMAMBER_CUDA_LIB"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "libremamber_ort_ops.so").write_bytes(b"")
    rc = cli_main(["native"])
    out = capsys.readouterr().out
    assert rc == 1  # two of three missing
    assert f"ort   ONNX Runtime custom-op library: {tmp_path / 'libremamber_ort_ops.so'}" in out
    assert "trt   TensorRT plugin library: MISSING" in out and "build the missing libraries with: bash scripts/build_native.sh" in out


def test_ort_session_options_registers_the_library():
    ort = pytest.importorskip("onnxruntime")
    try:
        native.library_path("ort")
    except NativeLibraryError as exc:
        pytest.skip(f"ORT custom-op library not built: {exc}")
    options = native.ort_session_options(threads=1)
    assert isinstance(options, ort.SessionOptions) and options.intra_op_num_threads == 1


def _run_native_test(name: str, success_line: str, timeout: int, missing: str) -> None:
    """Run one C++ test executable of the CMake build; it must exit 0 and print its success line."""
    exe = BUILD / name
    if not exe.is_file():
        pytest.skip(f"{exe} not built ({missing})")
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert success_line in proc.stdout


def test_scan_math_unit_test_passes():
    """The ctest executable (C++): shared maths + CPU kernel vs a double-precision recurrence."""
    _run_native_test("remamber_scan_math_test", "all checks passed", timeout=120, missing="bash scripts/build_native.sh")


def test_cuda_kernel_emulated_on_cpu_matches_cpu_kernel():
    """The CUDA kernel source compiled with g++, each block's 128 threads run as std::threads with
    emulated shuffles and barriers, compared with the CPU kernel (tails, misaligned rows, N 1..16)."""
    _run_native_test("remamber_kernel_emulation_test", "emulated CUDA kernel matches the CPU kernel", timeout=600, missing="bash scripts/build_native.sh")


def test_plugin_fields_round_trip():
    """TensorRT plugin (C++): creator fields, createPlugin checks, getFieldsToSerialize round trip."""
    _run_native_test("remamber_plugin_fields_test", "all checks passed", timeout=120, missing="needs CUDA and TensorRT headers; bash scripts/build_native.sh")


def test_build_log_has_no_compiler_warnings():
    log = BUILD / "build.log"
    if not log.is_file():
        pytest.skip(f"{log} not found: build with bash scripts/build_native.sh")
    text = log.read_text(errors="replace")
    # g++ "warning:", nvcc "warning #123-D", ptxas "ptxas warning"
    hits = [ln for ln in text.splitlines() if re.search(r"\bwarning\b", ln, re.IGNORECASE)
            and "CMake Warning" not in ln and "-Werror" not in ln]
    assert not hits, "compiler warnings in the native build:\n" + "\n".join(hits[:20])
