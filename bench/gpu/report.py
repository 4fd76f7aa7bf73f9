"""summary.md: the short tables printed last by gpu_check, with issue #9's targets as met/MISSED."""

from __future__ import annotations

from .cases import ERROR_BOUND
from .common import markdown_table

NAN = float("nan")


def _verdict(v) -> str:
    return {True: "met", False: "MISSED"}.get(v, "")


def _fmt(x, spec=".1f") -> str:
    return "" if x is None else format(x, spec)


def targets(results: dict) -> list[tuple[str, bool]]:
    """Every issue #9 target this run measured, as (label, met)."""
    steps = results["steps"]
    out = [(f"scan {k}", v) for k, v in steps.get("speed", {}).get("targets", {}).items() if v is not None]
    for r in steps.get("forward_scans", {}).get("runs", []):
        if "target_met" in r:
            out.append((f"37 scans of a forward @{r['resolution']} {r['dtype']} <= 1.3x floor", r["target_met"]))
    for r in steps.get("e2e_modes", {}).get("runs", []):
        if "target_met" in r:
            out.append((f"graph replay @{r['resolution']} {r['precision']} <= 1.15x kernel time", r["target_met"]))
    peer = steps.get("peer", {})
    for r in peer.get("rows", []):
        for key in [k for k in r if k.endswith("_over_ours")]:
            out.append((f"faster than {key[:-10]} on {'x'.join(map(str, r['shape']))} {r['dtype']}", r[key] > 1.0))
    return out


def ss2d_targets(results: dict) -> list[tuple[str, bool]]:
    """Issue #10's GPU target this run measured, as (label, met)."""
    return [(f"fused model kernel time @{r['resolution']} {r['precision']} <= 0.80x unfused", r["target_met"])
            for r in results["steps"].get("ss2d_model", {}).get("runs", []) if "target_met" in r]


def ss2d_sections(steps: dict) -> list[str]:
    """The fused SS2DScan tables (bench/gpu/ss2d.py): correctness groups, speed per shape, model kernel time."""
    parts = []
    corr = steps.get("ss2d_correctness", {})
    if corr.get("by_group"):
        worst, vs = corr.get("worst", {}), corr.get("worst_vs_unfused", {})
        parts.append("fused SS2DScan correctness (vs float64; fused vs unfused on the model shapes)\n" + markdown_table(
            ["group", "pass", "FAIL", "skipped"], [[g, c["pass"], c["FAIL"], c["skipped"]] for g, c in corr["by_group"].items()])
            + f"\nworst vs float64: rel_l2 {_fmt(worst.get('rel_l2'), '.2e')}, max/max {_fmt(worst.get('max_abs_over_max_ref'), '.2e')}"
            f"; worst fused vs unfused: rel_l2 {_fmt(vs.get('rel_l2'), '.2e')}, max/max {_fmt(vs.get('max_abs_over_max_ref'), '.2e')}")
    speed = steps.get("ss2d_speed", {})
    rows = [["x".join(map(str, r["shape"])), r["layout"], r["dtype"], f"{r['median_ms'] * 1e3:.1f}", f"{r['floor_ms'] * 1e3:.1f}",
             f"{r['GBps']:.0f}", f"{r['fraction_of_copy']:.0%}"] for r in speed.get("scan", []) if "median_ms" in r]
    if rows:
        parts.append(f"fused SS2DScan speed (compulsory bytes only; copy bandwidth {speed.get('copy_GBps', 0):.0f} GB/s)\n"
                     + markdown_table(["B x D x H x W", "layout", "dtype", "median µs", "floor µs", "GB/s", "of copy"], rows))
    model = steps.get("ss2d_model", {})
    if model.get("runs"):
        rows = [[r["resolution"], r["precision"], _fmt(r.get("fused", {}).get("kernel_ms"), ".2f"),
                 _fmt(r.get("selective", {}).get("kernel_ms"), ".2f"), _fmt(r.get("fused", {}).get("scan_kernel_ms"), ".2f"),
                 _fmt(r.get("selective", {}).get("scan_kernel_ms"), ".2f"), _fmt(r.get("fused_over_unfused"), ".2f"),
                 _fmt(r.get("logits_rel_l2_fused_vs_selective"), ".1e"), _verdict(r.get("target_met")) or r.get("status", "")]
                for r in model["runs"]]
        parts.append(f"{model.get('model', '')} model, summed kernel time fused vs unfused (ms; target: fused <= 0.80x @1024 fp16)\n"
                     + markdown_table(["S", "prec", "fused", "unfused", "fused scans", "unfused scans", "fused/unfused",
                                       "logits rel_l2", "target"], rows))
    return parts


def summary_text(results: dict) -> str:
    steps = results["steps"]
    parts = [markdown_table(["step", "status", "s", "note"], [
        [n, s.get("status"), f"{s.get('seconds', 0):.1f}", (s.get("reason") or s.get("error") or "")[:90]] for n, s in steps.items()])]
    corr = steps.get("correctness", {})
    if corr.get("by_group"):
        parts.append(markdown_table(["correctness group", "pass", "FAIL", "skipped"],
                                    [[g, c["pass"], c["FAIL"], c["skipped"]] for g, c in corr["by_group"].items()]))
        worst = [f"{k}: rel_l2 {v['rel_l2']:.2e}, max/max {v['max_abs_over_max_ref']:.2e}" for k, v in corr.items() if k.startswith("worst_")]
        parts.append("worst errors: " + "; ".join(worst) + f" (bound {ERROR_BOUND['float32']:.0e})")
    harness = steps.get("plugin_harness", {})
    if harness.get("plain", {}).get("cases"):
        rows = [[c["case"], c["dtype"], c["has_D"], c["has_delta_bias"], "x".join(map(str, c["shape"])) if isinstance(c["shape"], list) else c["shape"],
                 _fmt(c.get("max_rel_err"), ".2e") or "none", "pass" if c["pass"] else "FAIL " + str(c.get("error", ""))[:60]]
                for c in harness["plain"]["cases"]]
        mem = harness.get("memcheck", {})
        parts.append("TensorRT plugin driven without TensorRT (remamber_plugin_harness); memcheck: "
                     + ("; ".join(mem.get("summary", [])) or mem.get("status", "not run")) + "\n"
                     + markdown_table(["case", "dtype", "D", "delta_bias", "shape", "max rel err", ""], rows))
    speed = steps.get("speed", {})
    if speed.get("scan"):
        copy = speed.get("copy", {})
        ref_ms = {tuple(c["shape"]): c["reference"]["median_ms"] for c in speed.get("comparison", []) if "reference" in c}
        rows = [["x".join(map(str, r["shape"])), r["dtype"], f"{r['median_ms'] * 1e3:.1f}", f"{r['floor_ms'] * 1e3:.1f}", f"{r['GBps']:.0f}",
                 f"{r['fraction_of_copy']:.0%}", _fmt(r.get("speedup_vs_fp32"), ".2f"), r.get("target", ""), _verdict(r.get("target_met")),
                 f"{ref_ms[tuple(r['shape'])] * 1e3:.0f}" if r["dtype"] == "float32" and tuple(r["shape"]) in ref_ms else ""]
                for r in speed["scan"] if "median_ms" in r]
        parts.append(f"copy bandwidth {copy.get('GBps', 0):.0f} GB/s\n" + markdown_table(
            ["scan shape", "dtype", "median µs", "floor µs", "GB/s", "of copy", "fp16 speedup", "target", "", "reference µs"], rows))
    fwd = steps.get("forward_scans", {})
    if fwd.get("runs"):
        rows = [[r["resolution"], r["dtype"], r.get("calls"), _fmt(r.get("median_ms"), ".3f"), _fmt(r.get("floor_ms"), ".3f"),
                 _fmt(r.get("ratio_to_floor"), ".2f"), _verdict(r.get("target_met")) or r.get("status", "")] for r in fwd["runs"]]
        parts.append("summed scan time of one base-conv forward (target <= 1.3x the byte floor)\n" + markdown_table(
            ["S", "dtype", "calls", "median ms", "floor ms", "x floor", "target"], rows))
    peer = steps.get("peer", {})
    if peer.get("rows"):
        names = sorted({k[:-3] for r in peer["rows"] for k in r if k.endswith("_ms") and k != "ours_ms"})
        rows = [["x".join(map(str, r["shape"])), r["dtype"], _fmt(r.get("ours_ms", NAN) * 1e3)]
                + [f"{_fmt(r.get(f'{n}_ms', NAN) * 1e3)} ({_fmt(r.get(f'{n}_over_ours'), '.2f')}x)" for n in names]
                for r in peer["rows"] if "ours_ms" in r]
        sums = [[f"one forward @{s['resolution']}", s["dtype"], _fmt(s.get("ours_ms"), ".3f") + " ms"]
                + [_fmt(s.get(f"{n}_ms"), ".3f") + " ms" for n in names] for s in peer.get("forward_sums", [])]
        parts.append("peer kernels (µs; peer/ours in brackets, > 1 = ours faster)\n"
                     + markdown_table(["scan shape", "dtype", "ours µs", *[f"{n} µs" for n in names]], rows + sums))
    e2e = steps.get("e2e", {})
    if e2e.get("runs"):
        rows = []
        for r in e2e["runs"]:
            c, ref = r.get("cuda", {}), r.get("reference", {})
            p = r.get("parity_cuda_vs_reference", {})
            rows.append([r["resolution"], r["precision"], f"{ref.get('median_ms', NAN):.1f}", f"{c.get('median_ms', NAN):.1f}",
                         f"{r.get('speedup', NAN):.2f}", f"{ref.get('peak_mem_bytes', 0) / 2**30:.2f} / {c.get('peak_mem_bytes', 0) / 2**30:.2f}",
                         f"{p.get('rel_l2_error', NAN):.2e}", {True: "pass", False: "FAIL"}.get(r.get("parity_pass"), "")])
        parts.append(markdown_table(["S", "prec", "reference ms", "cuda ms", "speedup", "peak GiB ref / cuda", "logits rel_l2", "parity"], rows))
    modes = steps.get("e2e_modes", {})
    if modes.get("runs"):
        rows = []
        for r in modes["runs"]:
            g, c = r.get("cudagraph", {}), r.get("compile", {})
            rows.append([r["resolution"], r["precision"], _fmt(r.get("eager", {}).get("median_ms")), _fmt(r.get("kernel_ms")),
                         r.get("kernel_launches") or "", _fmt(g.get("median_ms")) or ("error" if "error" in g else ""),
                         _fmt(c.get("median_ms")) or ("error" if "error" in c else c.get("status", "")), _fmt(c.get("compile_s"), ".0f"),
                         _fmt(r.get("replay_over_kernels"), ".2f"), _verdict(r.get("target_met")) or r.get("status", "")])
        parts.append("forward modes (ms; target: graph replay <= 1.15x kernel time)\n" + markdown_table(
            ["S", "prec", "eager", "kernels", "launches", "graph replay", "compile", "compile s", "replay/kernels", "target"], rows))
    parts.extend(ss2d_sections(steps))
    from .triton_check import triton_sections  # the Triton backend's tables and issue #14's targets

    parts.extend(triton_sections(results))
    tg = targets(results)
    if tg:
        parts.append(f"issue #9 targets: {sum(v for _, v in tg)} of {len(tg)} met; MISSED: "
                     + ("; ".join(k for k, v in tg if not v) or "none"))
    tg10 = ss2d_targets(results)
    if tg10:
        parts.append(f"issue #10 targets: {sum(v for _, v in tg10)} of {len(tg10)} met; MISSED: "
                     + ("; ".join(k for k, v in tg10 if not v) or "none"))
    verdict = "FAIL" if results.get("failures") else "PASS"
    parts.append(f"gpu_check: {verdict} ({len(results.get('failures', []))} failures) in {results.get('elapsed_s', 0):.0f} s; "
                 f"device: {(steps.get('probe', {}).get('gpu') or {}).get('name', 'none')}")
    return "\n\n".join(parts)
