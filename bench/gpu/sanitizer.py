"""The sanitizer step: the ABI driver (abi_driver.cu) plainly, then under compute-sanitizer memcheck,
racecheck, synccheck and initcheck. A refused device (gVisor) is recorded as "not run", never as passed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .common import Run, run_cmd, tool

# compute-sanitizer's own words when it cannot attach to the device (gVisor machines, KINDS.md).
DEVICE_REFUSED = "Device not supported"


def _parse_driver(out: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith(("VERSION", "CASE", "REJECT", "DRIVER"))]
    return {"lines": lines, "passed": sum(ln.endswith("PASS") or " PASS" in ln for ln in lines if not ln.startswith("DRIVER")),
            "failed": [ln for ln in lines if "FAIL" in ln and not ln.startswith("DRIVER")]}


def step_sanitizer(run: Run, lib: Path | None, driver: Path | None) -> None:
    with run.step("sanitizer") as e:
        if lib is None or driver is None or not driver.is_file():
            raise RuntimeError("no library or driver to run (build step failed)")
        env = dict(os.environ)
        rc, out, dt = run_cmd([str(driver), str(lib)], timeout=120)
        e["plain"] = {"exit": rc, "seconds": round(dt, 1), **_parse_driver(out)}
        run.log(f"sanitizer: plain driver exit {rc} in {dt:.1f} s")
        if rc != 0:
            e["plain"]["tail"] = out[-3000:]
            run.fail(f"ABI driver (no sanitizer) exit {rc}: {e['plain']['failed'][:4]}")
        cs = tool("compute-sanitizer")
        if not cs:
            e["sanitizer"] = "compute-sanitizer not found"
            run.log("sanitizer: compute-sanitizer not found; memcheck not run")
            e["status"] = "failed"
            run.fail("compute-sanitizer not found: memcheck not run")
            return
        tools = [("memcheck", ["--leak-check", "full"], None), ("racecheck", [], "quick"), ("synccheck", [], "quick"), ("initcheck", [], "quick")]
        for check, extra, quick in tools:
            if run.remaining() < 150 and check != "memcheck":
                e[check] = {"status": "skipped", "reason": "time budget"}
                continue
            cmd = [cs, "--tool", check, *extra, "--error-exitcode", "86", str(driver), str(lib)] + ([quick] if quick else [])
            rc, out, dt = run_cmd(cmd, timeout=150 if check == "memcheck" else 90, env=env)
            summary = [ln for ln in out.splitlines() if "ERROR SUMMARY" in ln or "RACECHECK SUMMARY" in ln or "LEAK SUMMARY" in ln]
            e[check] = {"exit": rc, "seconds": round(dt, 1), "summary": summary, **_parse_driver(out)}
            run.log(f"sanitizer: {check} exit {rc} in {dt:.1f} s: {summary}")
            if rc != 0 and DEVICE_REFUSED in out:
                # KINDS.md: compute-sanitizer refuses the device on gVisor machines. Not checked, not failed.
                e[check]["status"] = "not run: compute-sanitizer refused the device (gVisor runtime?)"
                e[check]["tail"] = out[-1500:]
                run.log(f"sanitizer: {check} could not run on this machine: {e[check]['status']}")
                if e["status"] == "running":  # shown as such in the summary, never as plain "ok"
                    e["status"] = "partial: compute-sanitizer refused the device"
                continue
            if rc != 0:
                e[check]["tail"] = out[-4000:]
                e["status"] = "failed"
                run.fail(f"compute-sanitizer {check} exit {rc}: {summary}")
