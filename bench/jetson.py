"""Jetson facts for bench reports: L4T/JetPack release, power mode, clock locking, and power drawn
during the timed loop (VDD_IN from tegrastats) with the energy per image it implies.

A Jetson is recognised by /etc/nv_tegra_release. The probes run the board's own tools
(`nvpmodel -q`, `jetson_clocks --show`, `tegrastats`); each one that is missing or refused (some need
root) is recorded as None with the reason, never as a failure. Parsers take the tools' text, so tests
feed them output written from NVIDIA's documented formats (tests/data/jetson/) instead of a device.

Energy per image = mean VDD_IN power over the timed loop x the loop's wall time / images processed
(mW x s = mJ). VDD_IN is the module's input rail (Orin Nano/NX, JetPack 6 tegrastats), so the
figure covers the whole module, not the GPU alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
POWER_RAIL = "VDD_IN"
# L4T major release -> JetPack major (R35: JetPack 5, R36: JetPack 6, R38: JetPack 7 / Thor)
JETPACK_OF_L4T = {32: "4", 35: "5", 36: "6", 38: "7"}


def parse_tegra_release(text: str) -> dict | None:
    """'# R36 (release), REVISION: 4.0, ...' -> {'l4t': '36.4.0', 'jetpack': '6', 'board': ..., 'eabi': ...}."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    major = int(m.group(1))
    rev = m.group(2) if m.group(2).count(".") >= 1 else m.group(2) + ".0"
    fields = dict(re.findall(r"(BOARD|EABI|GCID):\s*([^,\s]+)", text))
    return {"l4t": f"{major}.{rev}", "jetpack": JETPACK_OF_L4T.get(major), "board": fields.get("BOARD"),
            "eabi": fields.get("EABI")}


def parse_nvpmodel(text: str) -> dict | None:
    """`nvpmodel -q`: 'NV Power Mode: MAXN' then the mode id on its own line -> {'name': 'MAXN', 'id': 0}."""
    m = re.search(r"NV Power Mode:\s*(\S[^\n]*?)\s*$", text, re.MULTILINE)
    if not m:
        return None
    after = text[m.end():]
    mid = re.search(r"^\s*(\d+)\s*$", after, re.MULTILINE)
    return {"name": m.group(1), "id": int(mid.group(1)) if mid else None}


def _freqs(line: str) -> dict:
    return {k: int(v) for k, v in re.findall(r"(MinFreq|MaxFreq|CurrentFreq|FreqOverride|Online)=(\d+)", line)}


def parse_jetson_clocks(text: str) -> dict | None:
    """`jetson_clocks --show`: clocks are locked when every online CPU, the GPU and the EMC run pinned at
    their maximum (what `jetson_clocks` sets: MinFreq = MaxFreq, EMC CurrentFreq = MaxFreq)."""
    cpus, gpu, emc = [], None, None
    for line in text.splitlines():
        s = line.strip()
        if re.match(r"cpu\d+:", s):
            f = _freqs(s)
            if f.get("Online", 1) == 1 and "MinFreq" in f:
                cpus.append(f)
        elif s.startswith("GPU "):
            gpu = _freqs(s)
        elif s.startswith("EMC "):
            emc = _freqs(s)
    if not cpus and gpu is None and emc is None:
        return None
    unlocked = []
    if any(c["MinFreq"] != c["MaxFreq"] for c in cpus):
        unlocked.append("CPU")
    if gpu is not None and gpu.get("MinFreq") != gpu.get("MaxFreq"):
        unlocked.append("GPU")
    if emc is not None and emc.get("CurrentFreq") != emc.get("MaxFreq"):
        unlocked.append("EMC")
    return {"locked": not unlocked, "unlocked": unlocked,
            "gpu_mhz": round(gpu["CurrentFreq"] / 1e6, 1) if gpu and "CurrentFreq" in gpu else None,
            "emc_mhz": round(emc["CurrentFreq"] / 1e6, 1) if emc and "CurrentFreq" in emc else None}


def parse_rail_mw(line: str, rail: str = POWER_RAIL) -> float | None:
    """Instantaneous power of ``rail`` in mW from one tegrastats line ('VDD_IN 5006mW/4988mW'; older
    releases print 'VDD_IN 5006/4988'); None when the line has no such rail."""
    m = re.search(rf"\b{re.escape(rail)} (\d+)(?:mW)?/(\d+)(?:mW)?", line)
    return float(m.group(1)) if m else None


def _run(cmd: list[str], timeout: float = 10.0) -> tuple[str | None, str | None]:
    if shutil.which(cmd[0]) is None:
        return None, f"{cmd[0]} not found"
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{' '.join(cmd)}: {exc}"
    if p.returncode != 0:
        return None, f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()[:200]} (root needed?)"
    return p.stdout, None


def detect(release_file: Path = TEGRA_RELEASE, model_file: Path = DEVICE_TREE_MODEL, run=_run) -> dict | None:
    """Jetson facts for the report's environment, or None when this is not a Jetson."""
    try:
        text = Path(release_file).read_text(errors="replace")
    except OSError:
        return None
    info = {"release": parse_tegra_release(text), "model": None, "nvpmodel": None, "clocks": None, "notes": []}
    try:
        info["model"] = Path(model_file).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        info["notes"].append(f"{model_file} unreadable")
    out, why = run(["nvpmodel", "-q"])
    info["nvpmodel"] = parse_nvpmodel(out) if out else None
    if why:
        info["notes"].append(why)
    out, why = run(["jetson_clocks", "--show"])
    info["clocks"] = parse_jetson_clocks(out) if out else None
    if why:
        info["notes"].append(why)
    return info


class PowerSampler:
    """Samples ``rail`` from a tegrastats process while the ``with`` block runs (the timed loop).

    Inactive (no samples, a reason) when not on a Jetson or tegrastats is missing. ``command`` is
    tegrastats by default; tests hand it a process that prints recorded lines.
    """

    def __init__(self, interval_ms: int = 100, command: list[str] | None = None, rail: str = POWER_RAIL,
                 release_file: Path = TEGRA_RELEASE):
        self.rail = rail
        self.samples_mw: list[float] = []
        self.reason: str | None = None
        self._proc = None
        self._thread = None
        self._started = self._stopped = 0.0
        self.on_jetson = command is not None or Path(release_file).exists()
        if command is None:
            if not self.on_jetson:
                self.reason = "not a Jetson (no /etc/nv_tegra_release)"
            elif shutil.which("tegrastats") is None:
                self.reason = "tegrastats not found"
            command = ["tegrastats", "--interval", str(interval_ms)]
        self.command = command

    @property
    def active(self) -> bool:
        return self.reason is None

    def __enter__(self):
        self._started = time.perf_counter()
        if not self.active:
            return self
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError as exc:
            self.reason = f"could not start {self.command[0]}: {exc}"
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            mw = parse_rail_mw(line, self.rail)
            if mw is not None:
                self.samples_mw.append(mw)

    def __exit__(self, *exc):
        self._stopped = time.perf_counter()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._thread.join(timeout=5)
        if self.active and not self.samples_mw:
            self.reason = f"no {self.rail} readings from {self.command[0]} during the timed loop"
        return False

    def summary(self, wall_s: float, images: int) -> dict:
        """The report's power entry for a loop of ``wall_s`` seconds that processed ``images`` images."""
        if not self.active:
            return {"rail": self.rail, "samples": 0, "mean_mw": None, "max_mw": None, "energy_per_image_mj": None,
                    "reason": self.reason}
        mean = sum(self.samples_mw) / len(self.samples_mw)
        return {"rail": self.rail, "samples": len(self.samples_mw), "mean_mw": mean, "max_mw": max(self.samples_mw),
                "energy_per_image_mj": energy_per_image_mj(mean, wall_s, images), "reason": None}


def energy_per_image_mj(mean_power_mw: float, wall_s: float, images: int) -> float:
    """mW x s = mJ, spread over the images the loop processed."""
    if images < 1 or wall_s < 0:
        raise ValueError(f"energy per image needs images >= 1 and wall_s >= 0, got {images}, {wall_s}")
    return mean_power_mw * wall_s / images
