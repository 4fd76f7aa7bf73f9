#!/usr/bin/env python3
"""Compile-only check and resource report of the CUDA selective-scan kernels (no GPU needed).

Compiles one per-dtype kernel translation unit (plugins/cuda/scan_kernel_<dtype>.cu) for one GPU
architecture with the project's warning flags as errors and `-Xptxas -v`, then prints one row per
kernel instantiation: launch shape (threads per row x rows per block, items per thread), state
capacity N, registers, stack frame, spill stores/loads and shared memory, as ptxas reports them.
A reader sees at a glance whether any kernel spills. tests/test_cuda_build.py runs it for sm_87,
sm_90 and sm_120; docs/KERNEL_NOTES.md holds one saved report.

    python3 scripts/cuda_resource_report.py --arch 90 --dtype fp32 [--nvcc /usr/local/cuda/bin/nvcc]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DTYPES = ("fp32", "fp16", "bf16")
# The flags CMakeLists.txt gives the CUDA targets with REMAMBER_WERROR=ON, plus the resource report.
WARN_FLAGS = ["-Werror=all-warnings", "-Xcompiler=-Wall,-Wextra,-Werror"]

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_TRAITS = re.compile(r"ScanTraits<(\d+), (\d+), (\d+)>, ([^,]+), (\d+)>")


def find_nvcc(explicit: str | None = None) -> str | None:
    """nvcc from the argument, $CUDACXX, PATH or /usr/local/cuda, or None."""
    for cand in (explicit, os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def compile_tu(nvcc: str, arch: int, dtype: str, workdir: Path) -> subprocess.CompletedProcess:
    """nvcc -c of one kernel TU for sm_<arch>; stdout+stderr hold the compiler's messages."""
    src = REPO / "plugins" / "cuda" / f"scan_kernel_{dtype}.cu"
    cmd = [nvcc, "-std=c++17", "-O3", f"-arch=sm_{arch}", "-Xptxas", "-v", *WARN_FLAGS,
           "-I", str(REPO / "plugins" / "common"), "-I", str(REPO / "plugins" / "cuda"),
           "-c", str(src), "-o", str(workdir / f"scan_kernel_{dtype}_sm{arch}.o")]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def demangle(names: list[str]) -> dict[str, str]:
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return {n: n for n in names}
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    return {n: (lines[i] if i < len(lines) else n) for i, n in enumerate(names)}


def parse_report(text: str) -> list[dict]:
    """One dict per kernel entry in ptxas -v output."""
    kernels: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            current = kernels.setdefault(m.group(1), {"mangled": m.group(1), "arch": m.group(2)})
        elif m := _PROPS.search(line):
            current = kernels.setdefault(m.group(1), {"mangled": m.group(1)})
        elif current is not None and (m := _STACK.search(line)):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif current is not None and (m := _USED.search(line)):
            current["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            current["smem"] = int(s.group(1)) if s else 0
    rows = [k for k in kernels.values() if "registers" in k]
    names = demangle([k["mangled"] for k in rows])
    for k in rows:
        k["name"] = names[k["mangled"]]
        t = _TRAITS.search(k["name"])
        if t:
            k["threads_per_row"], k["rows_per_block"], k["items"] = (int(t.group(i)) for i in (1, 2, 3))
            k["dtype"], k["max_n"] = t.group(4).strip(), int(t.group(5))
    return rows


def format_table(rows: list[dict], arch: int, dtype: str) -> str:
    head = (f"sm_{arch} scan_kernel_{dtype}.cu: {len(rows)} kernels\n"
            "| shape (threads/row x rows/block, items) | N cap | registers | stack B | spill st/ld B | smem B |\n"
            "|---|---|---|---|---|---|")
    body = []
    for k in sorted(rows, key=lambda r: (r.get("threads_per_row", 0), r.get("items", 0), r.get("max_n", 0))):
        shape = (f"{k['threads_per_row']} x {k['rows_per_block']}, {k['items']}"
                 if "threads_per_row" in k else k["name"][:60])
        body.append(f"| {shape} | {k.get('max_n', '?')} | {k['registers']} | {k.get('stack', '?')} | "
                    f"{k.get('spill_stores', '?')}/{k.get('spill_loads', '?')} | {k['smem']} |")
    return "\n".join([head, *body])


def report(arch: int, dtype: str, nvcc: str | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Compiles and parses; raises FileNotFoundError when no nvcc is found."""
    tool = find_nvcc(nvcc)
    if tool is None:
        raise FileNotFoundError("nvcc not found: install the CUDA toolkit or set CUDACXX")
    with tempfile.TemporaryDirectory(prefix="remamber-cuda-report-") as tmp:
        proc = compile_tu(tool, arch, dtype, Path(tmp))
    return proc, parse_report(proc.stdout + proc.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="SM version, e.g. 87, 90, 120 (default 90)")
    ap.add_argument("--dtype", choices=DTYPES, default="fp32", help="which kernel TU (default fp32)")
    ap.add_argument("--nvcc", default=None, help="nvcc to use (default: $CUDACXX, PATH, /usr/local/cuda)")
    args = ap.parse_args(argv)
    try:
        proc, rows = report(args.arch, args.dtype, args.nvcc)
    except FileNotFoundError as exc:
        print(f"cuda_resource_report: error: {exc}", file=sys.stderr)
        return 2
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        print(f"cuda_resource_report: error: nvcc failed for sm_{args.arch} ({args.dtype})", file=sys.stderr)
        return 1
    print(format_table(rows, args.arch, args.dtype))
    spilling = [r for r in rows if r.get("spill_stores", 0) or r.get("spill_loads", 0)]
    print(f"kernels with spills: {len(spilling)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
