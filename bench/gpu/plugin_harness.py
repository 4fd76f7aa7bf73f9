"""The plugin_harness step: the TensorRT plugin's runtime path on a GPU, without TensorRT.

`remamber_plugin_harness` (a CMake target, built by the build step when TensorRT headers are at
hand) dlopens libremamber_trt_plugin.so and drives it as TensorRT would (getCreators, createPlugin
from the parser's fields, clone, attachToContext, configurePlugin/onShapeChange, getWorkspaceSize,
enqueue), comparing with float64. It prints one JSON line per case
{"case", "dtype", "has_D", "has_delta_bias", "shape", "max_rel_err", "pass"} and exits 0 iff all
pass. Run here plainly, then under compute-sanitizer memcheck.
"""

from __future__ import annotations

import json
from pathlib import Path

from .build import NO_TRT_REASON
from .common import HARNESS_NAME, PLUGIN_FILENAME, Run, run_cmd, tool

CASE_KEYS = ("case", "dtype", "has_D", "has_delta_bias", "shape", "max_rel_err", "pass")


def parse_harness_output(out: str) -> dict:
    """Case lines (JSON objects with the harness's keys) and what else was printed."""
    cases, malformed = [], []
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            malformed.append(line[:200])
            continue
        if isinstance(obj, dict) and all(k in obj for k in CASE_KEYS):
            cases.append(obj)
        else:
            malformed.append(line[:200])
    return {"cases": cases, "passed": sum(bool(c["pass"]) for c in cases),
            "failed": [c for c in cases if not c["pass"]], "malformed": malformed}


def locate(run: Run, build_dir: Path) -> tuple[Path | None, Path | None, str | None]:
    """(harness, plugin, reason why not runnable) from the build step's record or the build folder."""
    build = run.step_result("build")
    if "tensorrt_headers" in build and not build["tensorrt_headers"]:
        return None, None, NO_TRT_REASON
    if build.get("plugin_build_error"):
        return None, None, f"the plugin build failed: {build['plugin_build_error'].get('error')}"
    plugin = Path(build["plugin"]) if build.get("plugin") else next(iter(sorted(build_dir.rglob(PLUGIN_FILENAME))), None)
    harness = Path(build["harness"]) if build.get("harness") else build_dir / HARNESS_NAME
    if plugin is None or not plugin.is_file():
        return None, None, f"no {PLUGIN_FILENAME} in {build_dir} (" + NO_TRT_REASON + ")"
    if not harness.is_file():
        return None, plugin, f"the build has {PLUGIN_FILENAME} but no {HARNESS_NAME} (CMake target missing?)"
    return harness, plugin, None


def step_plugin_harness(run: Run, build_dir: Path) -> None:
    with run.step("plugin_harness") as e:
        harness, plugin, reason = locate(run, build_dir)
        if reason and plugin is None:
            e["status"] = "skipped"
            e["reason"] = reason
            return
        if reason:  # the plugin was built but its harness was not: a broken build, not a missing input
            raise RuntimeError(reason)
        e["harness"], e["plugin"] = str(harness), str(plugin)
        cmd = [str(harness), "--plugin", str(plugin)]
        rc, out, dt = run_cmd(cmd, timeout=180)
        e["plain"] = {"exit": rc, "seconds": round(dt, 1), **parse_harness_output(out)}
        run.log(f"plugin_harness: plain exit {rc} in {dt:.1f} s, {e['plain']['passed']} of {len(e['plain']['cases'])} cases pass")
        if rc != 0 or not e["plain"]["cases"] or e["plain"]["failed"]:
            e["plain"]["tail"] = out[-3000:]
            e["status"] = "failed"
            run.fail(f"plugin harness exit {rc}: {len(e['plain']['failed'])} failed of {len(e['plain']['cases'])} cases")
        cs = tool("compute-sanitizer")
        if not cs:
            e["memcheck"] = {"status": "not run: compute-sanitizer not found"}
            e["status"] = "failed"
            run.fail("compute-sanitizer not found: the plugin harness ran without memcheck")
            return
        cmd = [cs, "--tool", "memcheck", "--leak-check", "full", "--error-exitcode", "86", *cmd]
        rc, out, dt = run_cmd(cmd, timeout=300)
        summary = [ln for ln in out.splitlines() if "ERROR SUMMARY" in ln or "LEAK SUMMARY" in ln]
        e["memcheck"] = {"exit": rc, "seconds": round(dt, 1), "summary": summary, **parse_harness_output(out)}
        run.log(f"plugin_harness: memcheck exit {rc} in {dt:.1f} s: {summary}")
        if rc != 0:
            e["memcheck"]["tail"] = out[-3000:]
            if "Device not supported" in out:
                e["memcheck"]["status"] = "not run: compute-sanitizer refused the device"
                if e["status"] == "running":
                    e["status"] = "partial: compute-sanitizer refused the device"
            else:
                e["status"] = "failed"
                run.fail(f"plugin harness under memcheck exit {rc}: {summary}")
