"""SS2D: VMamba's selective-scan mixer in the two forms ReMamber uses.

- ``layout="cross"``, ``gated=False``: forward type "v4noz" (backbone VSS blocks, Twister spatial
  scan, MambaDecoder blocks). in_proj C_in -> d_inner, no z branch, four spatial directions.
- ``layout="bidi"``, ``gated=True``: forward type "v052d" (the Twister's channel scan). in_proj
  C_in -> 2 * d_inner, split into x and z, SiLU(z) multiplies the normalised scan output.

Dataflow (spec 3.2): in_proj -> depthwise 3x3 conv (no bias) -> SiLU -> direction layout ->
x_proj (grouped 1x1 conv1d) -> dt_proj (grouped 1x1 conv1d) -> ONE selective-scan call for all
four directions -> merge in fp32 -> LayerNorm2d in fp32 -> cast to the activation dtype ->
[* SiLU(z)] -> out_proj.

Two equivalent scan paths, chosen per module by ``scan_op`` (``set_scan_op(model, ...)`` sets it on
every SS2D of a model; checkpoint keys are the same for both):

- "fused" (default): x_proj and dt_projs are pointwise, so they commute with the direction
  permutations; they run in the spatial layout (one 1x1 conv2d with all four directions' x_proj
  weights, then the grouped dt projection) and ONE ``remamber::ss2d_scan`` call does cross-scan,
  scan and merge (plugins/ss2dScanPlugin/README.md). Exports as one SS2DScan node per SS2D.
- "selective": the layout ops above around ``remamber::selective_scan`` (today's v1 graphs).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops
from .layers import LayerNorm2d, Linear2d
from .scan_layout import bidi_merge, bidi_scan, cross_merge, cross_scan

NUM_DIRECTIONS = 4
SCAN_OPS = ("fused", "selective")


def set_scan_op(model: nn.Module, scan_op: str) -> nn.Module:
    """Select the scan path of every SS2D in ``model`` ("fused" or "selective"); returns ``model``."""
    if scan_op not in SCAN_OPS:
        from ..errors import InputError

        raise InputError(f"scan op {scan_op!r} is not one of {', '.join(SCAN_OPS)}")
    for module in model.modules():
        if isinstance(module, SS2D):
            module.scan_op = scan_op
    return model


class SS2D(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        in_dim: int | None = None,
        gated: bool = False,
        layout: str = "cross",
        eps: float = 1e-5,
    ):
        super().__init__()
        if layout not in ("cross", "bidi"):
            raise ValueError(f"layout must be 'cross' or 'bidi', got {layout!r}")
        d_inner = int(ssm_ratio * d_model)
        dt_rank = math.ceil(d_model / 16)
        k = NUM_DIRECTIONS
        self.d_model, self.d_inner, self.d_state, self.dt_rank = d_model, d_inner, d_state, dt_rank
        self.gated, self.layout = gated, layout
        self.scan_op = "fused"  # or "selective"; see the module docstring and set_scan_op()

        # Parameter names and shapes are those of the official checkpoints (spec 6.1).
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.out_norm = LayerNorm2d(d_inner, eps=eps)
        self.in_proj = Linear2d(in_dim or d_model, 2 * d_inner if gated else d_inner, bias=False)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=False)
        self.out_proj = Linear2d(d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Official "v0" init (VMamba mamba_init; spec 1.2). Uses the global torch RNG."""
        k, d_inner, rank, n = NUM_DIRECTIONS, self.d_inner, self.dt_rank, self.d_state
        # x_proj: nn.Linear(d_inner, R + 2N) default init, i.e. U(+-1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(d_inner)
        self.x_proj_weight.uniform_(-bound, bound)
        std = rank ** -0.5
        self.dt_projs_weight.uniform_(-std, std)
        dt = torch.exp(
            torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        # S4D-real: A = -(1..N) per channel, stored as log; with N = 1 every entry is log 1 = 0.
        self.A_logs.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(k * d_inner, 1))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        z = None
        if self.gated:
            x, z = x.chunk(2, dim=1)
            z = self.act(z)
        x = self.act(self.conv2d(x))
        y = self.scan(x)
        if z is not None:
            y = y * z
        return self.out_proj(y)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """forward_corev2: (B, d_inner, H, W) -> normalised merged scan output, same shape and dtype."""
        if self.scan_op == "fused":
            return self._scan_fused(x)
        return self._scan_selective(x)

    def _scan_fused(self, x: torch.Tensor) -> torch.Tensor:
        """Projections in the spatial layout, then one ss2d_scan (no flip/transpose/concat)."""
        batch, d_inner, height, width = x.shape
        k, rank, n = NUM_DIRECTIONS, self.dt_rank, self.d_state
        x_dbl = F.conv2d(x, self.x_proj_weight.reshape(k * (rank + 2 * n), d_inner, 1, 1))
        x_dbl = x_dbl.reshape(batch, k, rank + 2 * n, height, width)
        dts, bs, cs = torch.split(x_dbl, [rank, n, n], dim=2)
        dts = F.conv2d(
            dts.reshape(batch, k * rank, height, width),
            self.dt_projs_weight.reshape(k * d_inner, rank, 1, 1),
            groups=k,
        )  # (B, 4*D, H, W)
        y = ops.ss2d_scan(
            x,
            dts,
            -torch.exp(self.A_logs.float()),
            bs.contiguous(),
            cs.contiguous(),
            self.Ds.float(),
            self.dt_projs_bias.reshape(-1).float(),
            True,
            self.layout,
        )  # float32 (B, D, H, W), the four directions summed
        y = self.out_norm(y)
        return y.to(x.dtype)

    def _scan_selective(self, x: torch.Tensor) -> torch.Tensor:
        """Today's v1 path: direction layout, projections per direction, selective_scan, merge."""
        batch, d_inner, height, width = x.shape
        length = height * width
        k, rank, n = NUM_DIRECTIONS, self.dt_rank, self.d_state
        xs = cross_scan(x) if self.layout == "cross" else bidi_scan(x)  # (B, K, D, L)
        xs = xs.reshape(batch, k * d_inner, length)
        x_dbl = F.conv1d(xs, self.x_proj_weight.reshape(k * (rank + 2 * n), d_inner, 1), groups=k)
        x_dbl = x_dbl.reshape(batch, k, rank + 2 * n, length)
        dts, bs, cs = torch.split(x_dbl, [rank, n, n], dim=2)
        dts = F.conv1d(dts.reshape(batch, k * rank, length), self.dt_projs_weight.reshape(k * d_inner, rank, 1), groups=k)
        ys = ops.selective_scan(
            xs,
            dts,
            -torch.exp(self.A_logs.float()),
            bs.contiguous(),
            cs.contiguous(),
            self.Ds.float(),
            self.dt_projs_bias.reshape(-1).float(),
            True,
        )  # float32 (B, K*D, L)
        ys = ys.reshape(batch, k, d_inner, length)
        y = cross_merge(ys, height, width) if self.layout == "cross" else bidi_merge(ys)
        y = self.out_norm(y.reshape(batch, d_inner, height, width))
        return y.to(x.dtype)
