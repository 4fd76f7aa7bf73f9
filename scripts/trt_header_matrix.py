#!/usr/bin/env python3
"""TensorRT header matrix: compile the plugins' host code against every TensorRT header set we have.

Why: JetPack 6 ships TensorRT 10.3, data-centre installs run 10.x or 11.x (11 removed the APIs 10.x
deprecated), and the plugin must compile against all of them. Only headers matter here: the plugin
does not link libnvinfer (README "TensorRT versions").

Header sets, deduplicated by content:
  - registry: every package version a reachable registry offers that ships NvInfer*.h. As of
    2026-11-29 that is the PyPI package kernel-lens 1.2.0, 1.3.0, 2.0.0 and 2.0.1 (MIT), which all
    carry the same official TensorRT 10.14.1 headers; no Debian or npm package and no other PyPI
    package ships TensorRT headers (TensorRT's own wheels are stubs that download from an index
    these machines cannot reach, TensorRT-RTX's wheels ship no headers). Fetched with
    `pip download --no-deps` into a cache folder; only kernel_lens/include/tensorrt/ is unpacked.
  - yours: `--include DIR` (repeatable) or REMAMBER_TRT_HEADER_DIRS=DIR:DIR, e.g. the include/
    folders of TensorRT installs or of NVIDIA/TensorRT release branches (release/10.3, release/11.1).

Each translation unit of plugins/*Plugin/*.cpp is compiled to an object (g++, C++17, -O0,
-Wall -Wextra -Werror -Werror=deprecated-declarations) with the TensorRT and CUDA headers as
system headers. -Werror=deprecated-declarations turns any use of an API TensorRT 10 marks
deprecated, the APIs TensorRT 11 removed, into an error even with 10.x headers. The CUDA .cu
kernels include no TensorRT header and are not part of this matrix.

    python scripts/trt_header_matrix.py [--no-registry] [--include DIR ...] [--jobs 2]

Exit status: 0 every set compiled, 1 a compile failed, 3 no header set could be had (e.g. PyPI not
reachable and no --include). Output: a table, then one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

REPO = pathlib.Path(__file__).resolve().parent.parent
KERNEL_LENS_WITH_HEADERS = ("1.2.0", "1.3.0", "2.0.0", "2.0.1")  # earlier releases ship no headers
KERNEL_LENS_PREFIX = "kernel_lens/include/tensorrt/"
DEFAULT_CACHE = pathlib.Path(tempfile.gettempdir()) / "remamber-trt-headers"
EXIT_PREREQ = 3
FLAGS = ["-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-Werror=deprecated-declarations"]


def header_version(include: pathlib.Path) -> str:
    """TensorRT version from NvInferVersion.h (10.x defines NV_TENSORRT_*; 10.13+ via TRT_*_ENTERPRISE)."""
    text = (include / "NvInferVersion.h").read_text(errors="replace")

    def part(name: str) -> str:
        for pattern in (rf"#define\s+TRT_{name}_ENTERPRISE\s+(\d+)", rf"#define\s+NV_TENSORRT_{name}\s+(\d+)"):
            m = re.search(pattern, text)
            if m:
                return m.group(1)
        raise ValueError(f"{include}/NvInferVersion.h has no {name} version")

    return ".".join(part(p) for p in ("MAJOR", "MINOR", "PATCH"))


def header_digest(include: pathlib.Path) -> str:
    h = hashlib.sha256()
    for f in sorted(include.glob("NvInfer*.h")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def fetch_kernel_lens(version: str, cache: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """Headers of kernel-lens==version under cache (downloaded once), or None and why not."""
    dest = cache / f"kernel-lens-{version}" / "include"
    if (dest / "NvInferRuntime.h").is_file():
        return dest, "cached"
    with tempfile.TemporaryDirectory(prefix="kl-", dir=_mkdir(cache)) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, f"kernel-lens=={version}"],
            capture_output=True, text=True, timeout=300,
        )
        wheels = list(pathlib.Path(tmp).glob("kernel_lens-*.whl"))
        if proc.returncode != 0 or not wheels:
            return None, f"pip download kernel-lens=={version} failed: {proc.stderr.strip()[-500:]}"
        staging = pathlib.Path(tmp) / "include"
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in zf.namelist():
                if name.startswith(KERNEL_LENS_PREFIX) and not name.endswith("/"):
                    target = staging / name[len(KERNEL_LENS_PREFIX):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
        if not (staging / "NvInferRuntime.h").is_file():
            return None, f"kernel-lens=={version} ships no NvInferRuntime.h"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(staging), dest)
    return dest, "downloaded"


def _mkdir(p: pathlib.Path) -> pathlib.Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def cuda_include() -> pathlib.Path | None:
    """The CUDA toolkit's include folder (NvInferRuntimeBase.h includes cuda_runtime_api.h)."""
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            p = pathlib.Path(os.environ[env]) / "include"
            if (p / "cuda_runtime_api.h").is_file():
                return p
    nvcc = shutil.which("nvcc")
    candidates = [pathlib.Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    candidates += [pathlib.Path("/usr/local/cuda/include"), pathlib.Path("/usr/include")]
    return next((p for p in candidates if (p / "cuda_runtime_api.h").is_file()), None)


def translation_units() -> list[pathlib.Path]:
    return sorted(REPO.glob("plugins/*Plugin/*.cpp"))


def compile_unit(cxx: str, unit: pathlib.Path, trt_inc: pathlib.Path, cuda_inc: pathlib.Path,
                 flags: list[str] | None = None) -> tuple[bool, str]:
    cmd = [cxx, *(flags or FLAGS), "-isystem", str(trt_inc), "-isystem", str(cuda_inc),
           "-I", str(REPO / "plugins" / "common"), "-I", str(REPO / "plugins" / "cuda"),
           *[a for d in sorted(REPO.glob("plugins/*Plugin")) for a in ("-I", str(d))],  # getCreators sees every plugin
           "-c", str(unit), "-o", os.devnull]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return proc.returncode == 0, proc.stderr[-4000:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--include", action="append", default=[], help="a TensorRT include folder (repeatable)")
    ap.add_argument("--no-registry", action="store_true", help="skip the registry header sets")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    args = ap.parse_args(argv)

    sets: dict[str, dict] = {}  # digest -> {version, sources, include}
    problems: list[str] = []

    def add(include: pathlib.Path, source: str) -> None:
        include = include.resolve()
        if not (include / "NvInferRuntime.h").is_file():
            problems.append(f"{source}: {include} has no NvInferRuntime.h")
            return
        entry = sets.setdefault(header_digest(include), {"version": header_version(include), "sources": [],
                                                          "include": str(include)})
        entry["sources"].append(source)

    if not args.no_registry:
        for v in KERNEL_LENS_WITH_HEADERS:
            inc, how = fetch_kernel_lens(v, pathlib.Path(args.cache))
            if inc is None:
                problems.append(how)
            else:
                add(inc, f"PyPI kernel-lens {v}")
    extra = args.include + [d for d in os.environ.get("REMAMBER_TRT_HEADER_DIRS", "").split(os.pathsep) if d]
    for d in extra:
        add(pathlib.Path(d), f"local {d}")

    cuda_inc = cuda_include()
    result = {"sets": [], "problems": problems, "units": [str(u.relative_to(REPO)) for u in translation_units()],
              "flags": FLAGS}
    if not sets or cuda_inc is None or shutil.which(args.cxx) is None:
        if cuda_inc is None:
            problems.append("no CUDA include folder with cuda_runtime_api.h (set CUDA_HOME)")
        if shutil.which(args.cxx) is None:
            problems.append(f"compiler {args.cxx} not found")
        if not sets:
            problems.append("no TensorRT header set could be had")
        result["passed"] = False
        print("RESULT " + json.dumps(result))
        return EXIT_PREREQ

    jobs = [(digest, unit) for digest in sets for unit in translation_units()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = dict(zip(jobs, pool.map(
            lambda job: compile_unit(args.cxx, job[1], pathlib.Path(sets[job[0]]["include"]), cuda_inc), jobs)))
    ok_all = True
    for digest, entry in sorted(sets.items(), key=lambda kv: [int(x) for x in kv[1]["version"].split(".")]):
        units = {str(u.relative_to(REPO)): outcomes[(digest, u)] for u in translation_units()}
        ok = all(o for o, _ in units.values())
        ok_all &= ok
        print(f"TensorRT {entry['version']:<8} {'compiled' if ok else 'FAILED':<9} {', '.join(entry['sources'])}")
        for name, (o, err) in units.items():
            if not o:
                print(f"  {name}:\n{err}")
        result["sets"].append({"version": entry["version"], "digest": digest, "sources": entry["sources"],
                               "compiled": ok, "errors": {n: e for n, (o, e) in units.items() if not o}})
    result["passed"] = ok_all
    print("RESULT " + json.dumps(result))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
