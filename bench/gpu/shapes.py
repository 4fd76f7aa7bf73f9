"""The model's scan shapes (REMAMBER_SPEC 5.2) and their byte and FLOP floors (5.3).

Derived from the architecture, not from a run: the inventory of every scan call of one forward at
any resolution, the fewest bytes the op must move per call, and docs/PERF.md's floor tables
(`python bench/gpu_check.py --floors-table`; a test keeps PERF.md current).
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import markdown_table

# ---------------------------------------------------------------------------------------------
# The model's scan shapes (REMAMBER_SPEC 5.2), derived from the architecture
# ---------------------------------------------------------------------------------------------
STAGE_DIMS = (128, 256, 512, 1024)  # VMamba-B channels C_s of stages 0..3
BACKBONE_DEPTHS = (2, 2, 15, 2)  # VSS blocks per stage
TWISTER_BLOCKS = 2  # Twister blocks per stage; each does one spatial and one channel scan
DIRECTIONS = 4  # K: cross-scan directions (= the scan's groups G)
SSM_RATIO = 2  # d_inner = 2 * C
CHANNEL_SCAN_POSITIONS = 16 * 16  # the channel scan pools to 16x16 = 256 "channels" (d_model)
MAMBA_DECODER_DEPTHS = {3: 2, 2: 4, 1: 2, 0: 2}  # SS2D blocks of the MambaDecoder at stage-s scale
PATCH_STRIDE = 4  # stage s has spatial size S / 2^(s+2)


@dataclass(frozen=True)
class ScanSite:
    site: str
    calls: int
    channels: int  # K*D
    length: int  # L
    groups: int = DIRECTIONS
    nstate: int = 1


def scan_inventory(variant: str, resolution: int) -> list[ScanSite]:
    """Every scan call of one forward pass (batch 1): REMAMBER_SPEC 5.2's table for any S."""
    if variant not in ("conv", "mamba"):
        raise ValueError(f"variant must be 'conv' or 'mamba', got {variant!r}")
    if resolution % 32:
        raise ValueError(f"resolution must be a multiple of 32, got {resolution}")
    sites: list[ScanSite] = []
    for s, dim in enumerate(STAGE_DIMS):
        side = resolution // (PATCH_STRIDE * 2**s)
        spatial = DIRECTIONS * SSM_RATIO * dim
        channel = DIRECTIONS * SSM_RATIO * CHANNEL_SCAN_POSITIONS
        sites.append(ScanSite(f"backbone stage{s} VSS", BACKBONE_DEPTHS[s], spatial, side * side))
        sites.append(ScanSite(f"twister{s} spatial", TWISTER_BLOCKS, spatial, side * side))
        sites.append(ScanSite(f"twister{s} channel", TWISTER_BLOCKS, channel, 3 * dim))
    if variant == "mamba":
        for s in (3, 2, 1, 0):
            side = resolution // (PATCH_STRIDE * 2**s)
            sites.append(
                ScanSite(f"mamba decoder stage{s}", MAMBA_DECODER_DEPTHS[s], DIRECTIONS * SSM_RATIO * STAGE_DIMS[s], side * side)
            )
    return sites


def unique_scan_shapes(resolutions=(480, 1024)) -> list[tuple[int, int]]:
    """Deduplicated (K*D, L) over both variants and the given resolutions, sorted."""
    shapes = {(s.channels, s.length) for r in resolutions for v in ("conv", "mamba") for s in scan_inventory(v, r)}
    return sorted(shapes)


# ---------------------------------------------------------------------------------------------
# Byte and FLOP floors (REMAMBER_SPEC 5.3, L0: the op's own interface)
# ---------------------------------------------------------------------------------------------
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# Ceilings used for floors before a run measures its own: KINDS.md's copy bandwidth measured on
# this workplace's machines (bytes read + written) and the datasheet's plain fp32 rate.
DEVICE_CEILINGS = {
    "H100": {"copy_GBps": 3000.0, "fp32_TFLOPs": 67.0},
    "H200": {"copy_GBps": 4300.0, "fp32_TFLOPs": 67.0},
}


def scan_bytes(batch, channels, length, groups=DIRECTIONS, nstate=1, in_dtype="float32", with_D=True, with_bias=True) -> dict:
    """Fewest bytes the op must move: u, delta, B, C read once at their dtype; A, D, delta_bias fp32;
    y written once in fp32."""
    e = DTYPE_BYTES[in_dtype]
    read = 2 * batch * channels * length * e  # u, delta
    read += 2 * batch * groups * nstate * length * e  # B, C
    read += channels * nstate * 4  # A
    read += channels * 4 * (int(with_D) + int(with_bias))
    write = batch * channels * length * 4
    return {"read": read, "write": write, "total": read + write}


def scan_flops(batch, channels, length, nstate=1) -> int:
    """VMamba's FLOP formula for the forward scan, 9*L*D*N + L*D (D = all channels), per batch item."""
    return batch * (9 * length * channels * nstate + length * channels)


def floors_for_shape(channels, length, batch=1, nstate=1, ceilings=None) -> dict:
    ceilings = ceilings or DEVICE_CEILINGS
    row = {"channels": channels, "length": length, "batch": batch, "nstate": nstate}
    flops = scan_flops(batch, channels, length, nstate)
    row["gflop"] = flops / 1e9
    for dtype, key in (("float32", "fp32"), ("float16", "fp16in")):
        row[f"bytes_{key}"] = scan_bytes(batch, channels, length, nstate=nstate, in_dtype=dtype)["total"]
    for dev, c in ceilings.items():
        for key in ("fp32", "fp16in"):
            row[f"floor_us_{dev}_{key}"] = row[f"bytes_{key}"] / (c["copy_GBps"] * 1e9) * 1e6
        row[f"flop_floor_us_{dev}"] = flops / (c["fp32_TFLOPs"] * 1e12) * 1e6
    return row


def model_totals(variant, resolution) -> dict:
    sites = scan_inventory(variant, resolution)
    tot = {"variant": variant, "resolution": resolution, "calls": sum(s.calls for s in sites)}
    tot["gflop"] = sum(s.calls * scan_flops(1, s.channels, s.length, s.nstate) for s in sites) / 1e9
    for dtype, key in (("float32", "fp32"), ("float16", "fp16in")):
        tot[f"bytes_{key}"] = sum(s.calls * scan_bytes(1, s.channels, s.length, s.groups, s.nstate, dtype)["total"] for s in sites)
    for dev, c in DEVICE_CEILINGS.items():
        for key in ("fp32", "fp16in"):
            tot[f"floor_ms_{dev}_{key}"] = tot[f"bytes_{key}"] / (c["copy_GBps"] * 1e9) * 1e3
    return tot


def _calls_by_shape(variant, resolution) -> dict:
    out: dict[tuple[int, int], int] = {}
    for s in scan_inventory(variant, resolution):
        out[(s.channels, s.length)] = out.get((s.channels, s.length), 0) + s.calls
    return out



def floors_table() -> str:
    """docs/PERF.md's floor tables (Markdown), generated from the functions above."""
    calls = {(v, r): _calls_by_shape(v, r) for v in ("conv", "mamba") for r in (480, 1024)}
    headers = ["K*D", "L", "calls conv@480/1024", "MB fp32", "MB fp16-in", "GFLOP",
               "H100 µs fp32 / fp16-in", "H200 µs fp32 / fp16-in", "fp32-rate µs"]
    rows = []
    for ch, ln in unique_scan_shapes():
        f = floors_for_shape(ch, ln)
        c480, c1024 = calls[("conv", 480)].get((ch, ln), 0), calls[("conv", 1024)].get((ch, ln), 0)
        rows.append([
            ch, ln, f"{c480}/{c1024}", f"{f['bytes_fp32'] / 1e6:.1f}", f"{f['bytes_fp16in'] / 1e6:.1f}", f"{f['gflop']:.3f}",
            f"{f['floor_us_H100_fp32']:.1f} / {f['floor_us_H100_fp16in']:.1f}",
            f"{f['floor_us_H200_fp32']:.1f} / {f['floor_us_H200_fp16in']:.1f}",
            f"{f['flop_floor_us_H100']:.2f}",
        ])
    per_shape = markdown_table(headers, rows)
    headers2 = ["model", "S", "scan calls", "GFLOP", "MB fp32", "MB fp16-in", "H100 ms fp32 / fp16-in", "H200 ms fp32 / fp16-in"]
    rows2 = []
    for v in ("conv", "mamba"):
        for r in (480, 1024):
            t = model_totals(v, r)
            rows2.append([
                f"ReMamber_{v.capitalize()}", r, t["calls"], f"{t['gflop']:.3f}", f"{t['bytes_fp32'] / 1e6:.0f}",
                f"{t['bytes_fp16in'] / 1e6:.0f}", f"{t['floor_ms_H100_fp32']:.3f} / {t['floor_ms_H100_fp16in']:.3f}",
                f"{t['floor_ms_H200_fp32']:.3f} / {t['floor_ms_H200_fp16in']:.3f}",
            ])
    totals = markdown_table(headers2, rows2)
    ceil = ", ".join(f"{d} {c['copy_GBps'] / 1000:.1f} TB/s copy, {c['fp32_TFLOPs']:.0f} TFLOP/s fp32" for d, c in DEVICE_CEILINGS.items())
    return (
        f"Per scan shape (batch 1, G = 4, N = 1, with D and delta_bias; floors at {ceil}):\n\n{per_shape}\n\n"
        f"Per forward pass (all scan calls, batch 1):\n\n{totals}\n"
    )
