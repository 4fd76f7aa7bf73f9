"""Module-level maths against formulas written out from REMAMBER_SPEC 3.2-3.3 in float64.

Each reference below is an independent re-statement of the spec: explicit position loops for the
scan directions, a sequential float64 selective scan, einsum projections (the official non
"no_einsum" path) and a hand-written LayerNorm. The modules run in float32.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from remamber.model.fusion import ImageTextCorr, TwisterBlock
from remamber.model.ss2d import SS2D


def naive_scan(u, delta, A, B, C, D, delta_bias):
    """Sequential selective scan (spec 5.1) in float64. u, delta (B, K*D, L); B, C (B, K, N, L)."""
    batch, channels, length = u.shape
    groups = B.shape[1]
    per = channels // groups
    dt = delta + delta_bias[None, :, None]
    dt = torch.where(dt <= 20, torch.log1p(torch.exp(dt)), dt)
    y = torch.zeros_like(u)
    for c in range(channels):
        g = c // per
        h = torch.zeros(batch, A.shape[1], dtype=u.dtype)
        for t in range(length):
            h = torch.exp(dt[:, c, t, None] * A[c]) * h + dt[:, c, t, None] * B[:, g, :, t] * u[:, c, t, None]
            y[:, c, t] = (C[:, g, :, t] * h).sum(-1) + D[c] * u[:, c, t]
    return y


def layer_norm_channels(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight[None, :, None, None] + bias[None, :, None, None]


def directions_cross(h, w):
    """Per direction k, the row-major source index of sequence position p."""
    k0 = [i * w + j for i in range(h) for j in range(w)]  # p = i*W + j
    k1 = [0] * (h * w)
    for i in range(h):
        for j in range(w):
            k1[j * h + i] = i * w + j  # p = j*H + i
    return [k0, k1, k0[::-1], k1[::-1]]


def ss2d_reference(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    p = {k: v.detach().double() for k, v in m.state_dict().items()}
    x = x.double()
    x = torch.einsum("oc,bchw->bohw", p["in_proj.weight"], x)
    if m.gated:
        x, z = x.chunk(2, dim=1)
        z = z * torch.sigmoid(z)
    x = F.conv2d(x, p["conv2d.weight"], padding=1, groups=x.shape[1])
    x = x * torch.sigmoid(x)
    b, d, h, w = x.shape
    flat = x.reshape(b, d, h * w)
    if m.layout == "cross":
        maps = directions_cross(h, w)
    else:  # bidirectional along the sequence (H == 1): fwd, fwd, rev, rev
        fwd = list(range(h * w))
        maps = [fwd, fwd, fwd[::-1], fwd[::-1]]
    xs = torch.stack([flat[:, :, idx] for idx in maps], dim=1)  # (b, 4, d, L)
    dbl = torch.einsum("bkdl,kcd->bkcl", xs, p["x_proj_weight"])
    r, n = m.dt_rank, m.d_state
    dts, bs, cs = dbl[:, :, :r], dbl[:, :, r : r + n], dbl[:, :, r + n :]
    dts = torch.einsum("bkrl,kdr->bkdl", dts, p["dt_projs_weight"])
    ys = naive_scan(
        xs.reshape(b, 4 * d, -1), dts.reshape(b, 4 * d, -1), -torch.exp(p["A_logs"]), bs, cs, p["Ds"],
        p["dt_projs_bias"].reshape(-1),
    ).reshape(b, 4, d, -1)
    y = torch.zeros(b, d, h * w, dtype=torch.float64)
    for k, idx in enumerate(maps):  # scatter each direction back to its source position and sum
        y[:, :, idx] += ys[:, k]
    y = layer_norm_channels(y.reshape(b, d, h, w), p["out_norm.weight"], p["out_norm.bias"])
    if m.gated:
        y = y * z
    return torch.einsum("oc,bchw->bohw", p["out_proj.weight"], y)


def randomise(module: torch.nn.Module, seed: int):
    """Non-trivial parameters (A != -1, biased norms) so every term of the formula matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("A_logs"):
                param.copy_(torch.rand(param.shape, generator=g) - 0.5)
            elif "norm" in name or "ln_1" in name:
                param.copy_(1 + 0.3 * torch.randn(param.shape, generator=g) if name.endswith("weight") else 0.2 * torch.randn(param.shape, generator=g))
            elif name.endswith("Ds"):
                param.copy_(torch.randn(param.shape, generator=g))


@pytest.mark.parametrize("h,w", [(3, 5), (4, 2)])
def test_ss2d_cross_matches_spec(h, w):
    torch.manual_seed(0)
    m = SS2D(6, d_state=2, in_dim=9).eval()  # in_dim = 3C as in the Twister's spatial scan
    randomise(m, 1)
    x = torch.randn(2, 9, h, w)
    with torch.no_grad():
        out = m(x)
    torch.testing.assert_close(out.double(), ss2d_reference(m, x), rtol=1e-4, atol=1e-5)


def test_ss2d_bidirectional_gated_matches_spec():
    torch.manual_seed(0)
    m = SS2D(8, d_state=1, gated=True, layout="bidi").eval()
    randomise(m, 2)
    x = torch.randn(2, 8, 1, 7)
    with torch.no_grad():
        out = m(x)
    torch.testing.assert_close(out.double(), ss2d_reference(m, x), rtol=1e-4, atol=1e-5)


def test_image_text_corr_matches_spec():
    torch.manual_seed(0)
    m = ImageTextCorr(visual_dim=6, text_dim=10, hidden_dim=8, out_dim=6, num_tokens=20).eval()
    img, txt = torch.randn(2, 6, 3, 4), torch.randn(2, 20, 10)
    p = {k: v.double() for k, v in m.state_dict().items()}
    gelu = lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))  # noqa: E731
    v = gelu(torch.einsum("bchw,oc->bhwo", img.double(), p["vis_proj.0.weight"]) + p["vis_proj.0.bias"])
    t = gelu(torch.einsum("blc,oc->blo", txt.double(), p["text_proj.0.weight"]) + p["text_proj.0.bias"])
    cost = torch.einsum("bhwc,blc->blhw", v, t)  # no mask, no scaling
    f = gelu(F.conv2d(cost, p["unsqueeze.0.weight"], p["unsqueeze.0.bias"], padding=1))
    expected = torch.einsum("bchw,oc->bohw", f, p["out_proj.weight"]) + p["out_proj.bias"][None, :, None, None]
    with torch.no_grad():
        torch.testing.assert_close(m(img, txt).double(), expected, rtol=1e-5, atol=1e-5)


def test_twister_block_dataflow():
    """img' = img + ss2d(resize_back(ss1d(resize16(cube))) + cube); g' = g + LN(g); l' = l + LN(l)."""
    torch.manual_seed(0)
    c, h, w = 4, 8, 6
    block = TwisterBlock(c, d_state=1, ssm_ratio=2.0, channel_res=16, eps=1e-5).eval()
    randomise(block, 3)
    img, g, l = (torch.randn(1, c, h, w) for _ in range(3))
    with torch.no_grad():
        img2, g2, l2 = block(img, g, l)
    lw, lb = block.ln_1.weight.detach().double(), block.ln_1.bias.detach().double()
    ln = lambda t: layer_norm_channels(t.double(), lw, lb)  # noqa: E731
    torch.testing.assert_close(g2.double(), g.double() + ln(g), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(l2.double(), l.double() + ln(l), rtol=1e-5, atol=1e-5)
    tw = block.self_attention
    cube = torch.cat([ln(img), ln(g), ln(l)], dim=1)
    small = F.interpolate(cube, size=(16, 16), mode="bilinear", align_corners=False)  # upsampling here
    seq = small.reshape(1, 3 * c, 256).transpose(1, 2).unsqueeze(2)  # (1, 256 positions, 1, 3C)
    mixed = ss2d_reference(tw.ss1d, seq).squeeze(2).transpose(1, 2).reshape(1, 3 * c, 16, 16)
    back = F.interpolate(mixed, size=(h, w), mode="bilinear", align_corners=False)
    expected = img.double() + ss2d_reference(tw.ss2d, back + cube)
    torch.testing.assert_close(img2.double(), expected, rtol=1e-4, atol=1e-4)
