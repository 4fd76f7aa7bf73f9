"""The fused SS2DScan (``remamber::SS2DScan``, issue #10) in the GPU check: the model's SS2D call
shapes, the op's compulsory bytes, the correctness matrix, contract inputs, the float64 reference
and the unfused path (v1 scan + layout ops) it is compared with.

The inventory is derived from the architecture (remamber.model.presets' ModelConfig), as shapes.py
derives the v1 scan inventory; a test counts the calls of a real forward against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cases import REFERENCE_ELEMENT_BUDGET, ScanCase, make_inputs
from .shapes import DIRECTIONS, DTYPE_BYTES, PATCH_STRIDE

LAYOUT_CODES = {"cross": 0, "bidi": 1}  # the op's layout attribute (plugins/ss2dScanPlugin/README.md)


@dataclass(frozen=True)
class SS2DSite:
    site: str
    calls: int
    dim: int  # D: channels of u (the op's four directions make 4*D scan channels)
    height: int
    width: int
    layout: str  # "cross" (spatial 4-direction scan) or "bidi" (the Twister's channel scan, H == 1)
    nstate: int = 1

    @property
    def shape(self) -> tuple[int, int, int, str]:
        return (self.dim, self.height, self.width, self.layout)


def ss2d_inventory(variant: str, resolution: int, config=None) -> list[SS2DSite]:
    """Every ss2d_scan call of one forward pass (batch 1) of the model built from `config`
    (default: the base preset). Stage s works at S / (4 * 2^s); d_inner = ssm_ratio * C_s; the
    Twister's channel scan runs over a channel_scan_res^2 grid (d_inner = ssm_ratio * res^2) as a
    1 x 3*C_s bidirectional row; the MambaDecoder's depths are listed from stage 3 down to stage 0."""
    from remamber.model.presets import BASE

    cfg = config or BASE
    if variant not in ("conv", "mamba"):
        raise ValueError(f"variant must be 'conv' or 'mamba', got {variant!r}")
    if resolution % 32:
        raise ValueError(f"resolution must be a multiple of 32, got {resolution}")
    inner = lambda c: int(cfg.ssm_ratio * c)  # noqa: E731
    sites: list[SS2DSite] = []
    for s, dim in enumerate(cfg.dims):
        side = resolution // (PATCH_STRIDE * 2**s)
        sites.append(SS2DSite(f"backbone stage{s} VSS", cfg.depths[s], inner(dim), side, side, "cross", cfg.d_state))
        sites.append(SS2DSite(f"twister{s} spatial", cfg.twister_depth, inner(dim), side, side, "cross", cfg.d_state))
        sites.append(SS2DSite(f"twister{s} channel", cfg.twister_depth, inner(cfg.channel_scan_res**2), 1, 3 * dim, "bidi",
                              cfg.d_state))
    if variant == "mamba":
        for i, s in enumerate((3, 2, 1, 0)):
            side = resolution // (PATCH_STRIDE * 2**s)
            sites.append(SS2DSite(f"mamba decoder stage{s}", cfg.mamba_decoder_depths[i], inner(cfg.dims[s]), side, side,
                                  "cross", cfg.d_state))
    return sites


def unique_ss2d_shapes(resolutions=(480, 1024), config=None) -> list[tuple[int, int, int, str]]:
    """Deduplicated (D, H, W, layout) over both variants and the given resolutions, smallest first."""
    shapes = {s.shape for r in resolutions for v in ("conv", "mamba") for s in ss2d_inventory(v, r, config)}
    return sorted(shapes, key=lambda s: (s[0] * s[1] * s[2], s))


def ss2d_bytes(batch, dim, height, width, nstate=1, in_dtype="float32", with_D=True, with_bias=True) -> dict:
    """The fused op's compulsory bytes (plugins/ss2dScanPlugin/README.md, "Compulsory bytes"): u
    (B*D*L), delta (4*B*D*L), B and C (4*B*N*L each) read once at their dtype; A (4D x N), D and
    delta_bias (4D each) in fp32; y (B*D*L) written once in fp32."""
    e = DTYPE_BYTES[in_dtype]
    length = height * width
    k = DIRECTIONS
    read = e * (batch * dim * length + k * batch * dim * length + 2 * k * batch * nstate * length)
    read += 4 * (k * dim * nstate + k * dim * int(with_D) + k * dim * int(with_bias))
    write = 4 * batch * dim * length
    return {"read": read, "write": write, "total": read + write}


@dataclass
class SS2DCase:
    batch: int
    dim: int
    height: int
    width: int
    layout: str
    nstate: int = 1
    dtype: str = "float32"
    with_D: bool = True
    with_bias: bool = True
    softplus: bool = True
    group: str = "model shapes b1 N1"
    unfused: bool = False  # also run the unfused path (v1 scan + layout ops) on the same inputs
    api: bool = False  # also run through remamber.ops.ss2d_scan (the public op path)

    def label(self) -> str:
        opts = "".join(["D" if self.with_D else "-", "b" if self.with_bias else "-", "s" if self.softplus else "-"])
        return f"b{self.batch} D{self.dim} {self.height}x{self.width} {self.layout} N{self.nstate} {self.dtype} {opts}"


def ss2d_plan(resolutions=(480, 1024)) -> list[SS2DCase]:
    """The fused kernel's correctness matrix, in priority order (the budget may cut the tail)."""
    shapes = unique_ss2d_shapes(resolutions)
    cases: list[SS2DCase] = []
    # 1. every model SS2D shape, batch 1, N = 1, three input dtypes; fused vs unfused on the same inputs.
    for i, (d, h, w, lay) in enumerate(shapes):
        for dt in ("float32", "float16", "bfloat16"):
            cases.append(SS2DCase(1, d, h, w, lay, dtype=dt, unfused=True, api=(i < 2)))
    # 2. options off on every shape: no D, no delta_bias, neither; no softplus on every other shape.
    for j, (d, h, w, lay) in enumerate(shapes):
        for dt in ("float32", "float16"):
            cases.append(SS2DCase(1, d, h, w, lay, dtype=dt, with_D=(j % 3 == 2), with_bias=(j % 3 == 1),
                                  softplus=(j % 2 == 0), group="options off"))
    # 3. N = 16 on the four smallest shapes and the largest (the reference on a channel sample there).
    for d, h, w, lay in shapes[:4] + shapes[-1:]:
        for dt in ("float32", "float16"):
            cases.append(SS2DCase(1, d, h, w, lay, nstate=16, dtype=dt, group="N16 b1"))
    # 4. batch 4 on the shapes of up to 4M elements per batch item.
    for d, h, w, lay in shapes:
        if d * h * w <= 4_000_000:
            for dt in ("float32", "float16"):
                cases.append(SS2DCase(4, d, h, w, lay, dtype=dt, group="b4 N1"))
    return cases


def make_ss2d_inputs(case: SS2DCase, gen, device) -> dict:
    """Contract inputs with the v1 check's distributions (cases.make_inputs over the 4*D scan
    channels), reshaped to the op's spatial tensors; u keeps the first D channels."""
    b, d, h, w = case.batch, case.dim, case.height, case.width
    inp = make_inputs(ScanCase(b, DIRECTIONS * d, h * w, DIRECTIONS, case.nstate, case.dtype, case.with_D, case.with_bias,
                               case.softplus), gen, device)
    return {"u": inp["u"][:, :d].reshape(b, d, h, w).contiguous(),
            "delta": inp["delta"].reshape(b, DIRECTIONS * d, h, w),
            "A": inp["A"],
            "B": inp["B"].reshape(b, DIRECTIONS, case.nstate, h, w),
            "C": inp["C"].reshape(b, DIRECTIONS, case.nstate, h, w),
            "D": inp["D"], "delta_bias": inp["delta_bias"]}


def reference_dims(case: SS2DCase, rng) -> list[int] | None:
    """Channels d of u for the float64 reference (None = all): every direction of a kept d is kept."""
    cost_per_dim = case.batch * DIRECTIONS * case.nstate * case.height * case.width
    if cost_per_dim * case.dim <= REFERENCE_ELEMENT_BUDGET:
        return None
    keep = max(2, min(case.dim, REFERENCE_ELEMENT_BUDGET // cost_per_dim))
    inner = sorted(rng.sample(range(1, case.dim - 1), keep - 2)) if case.dim > 2 else []
    return sorted({0, case.dim - 1, *inner})


def select_dims(inp: dict, dims: list[int] | None) -> dict:
    """The inputs restricted to channels `dims` of u (and the same d of each direction)."""
    import torch

    if dims is None:
        return inp
    idx = torch.tensor(dims, device=inp["u"].device)
    b, d = inp["u"].shape[:2]
    rows = (torch.arange(DIRECTIONS, device=idx.device)[:, None] * d + idx[None]).reshape(-1)  # k*D + d, k-major
    pick = lambda t: None if t is None else t[rows]  # noqa: E731
    return {"u": inp["u"][:, idx], "delta": inp["delta"][:, rows], "A": inp["A"][rows], "B": inp["B"], "C": inp["C"],
            "D": pick(inp["D"]), "delta_bias": pick(inp["delta_bias"])}


def ss2d_reference(inp: dict, softplus: bool, layout: str, dims: list[int] | None):
    """remamber.ops.ss2d_scan_reference on float64 upcasts (of the sampled channels)."""
    from remamber.ops import ss2d_scan_reference

    sub = select_dims(inp, dims)
    dbl = {k: None if v is None else v.double() for k, v in sub.items()}
    return ss2d_scan_reference(dbl["u"], dbl["delta"], dbl["A"], dbl["B"], dbl["C"], dbl["D"], dbl["delta_bias"], softplus,
                               LAYOUT_CODES[layout])


def unfused_ss2d(scan_into, inp: dict, softplus: bool, layout: str):
    """The unfused path on the same spatial inputs: gather the four directions into a (B, 4D, L)
    copy (the layout ops), one v1 selective scan (groups = 4) into a fp32 (B, 4D, L) output, then
    scatter each direction back and sum them in the order k = 0..3 (the merge)."""
    import torch

    from remamber.ops.reference import ss2d_positions

    u = inp["u"]
    b, d, h, w = u.shape
    n, length = inp["A"].shape[1], h * w
    pos = ss2d_positions(LAYOUT_CODES[layout], h, w, u.device)  # (4, L)
    us = u.reshape(b, d, length)[:, :, pos].permute(0, 2, 1, 3).reshape(b, DIRECTIONS * d, length)
    d4 = inp["delta"].reshape(b, DIRECTIONS, d, length)
    b4 = inp["B"].reshape(b, DIRECTIONS, n, length)
    c4 = inp["C"].reshape(b, DIRECTIONS, n, length)
    deltas = torch.stack([d4[:, k, :, pos[k]] for k in range(DIRECTIONS)], 1).reshape(b, DIRECTIONS * d, length)
    bs = torch.stack([b4[:, k, :, pos[k]] for k in range(DIRECTIONS)], 1).contiguous()
    cs = torch.stack([c4[:, k, :, pos[k]] for k in range(DIRECTIONS)], 1).contiguous()
    ys = torch.empty(b, DIRECTIONS * d, length, dtype=torch.float32, device=u.device)
    scan_into(ys, us.contiguous(), deltas.contiguous(), inp["A"], bs, cs, inp["D"], inp["delta_bias"], delta_softplus=softplus)
    ys = ys.reshape(b, DIRECTIONS, d, length)
    y = torch.zeros(b, d, length, dtype=torch.float32, device=u.device)
    for k in range(DIRECTIONS):
        spatial = torch.empty_like(y)
        spatial[:, :, pos[k]] = ys[:, k]
        y = y + spatial
    return y.reshape(b, d, h, w)
