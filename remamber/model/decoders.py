"""The two decoders of the official code (spec 4.1, 4.2).

Both take the stage features deepest first, [c4 (S/32), c3, c2, c1 (S/4)], and return logits
(B, 1, S, S).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fusion import ImageTextCorr, global_text
from .layers import LayerNorm2d, Linear2d, broadcast_hw
from .presets import ModelConfig
from .ss2d import SS2D


def _up2_corners(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


# ---- ConvDecoder (ReMamber_Conv, the paper's decoder) --------------------------------------------

class Conv2dBN(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, act: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act_layer = nn.Hardswish() if act else nn.Identity()

    def forward(self, x):
        return self.act_layer(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    """1x1+BN+Hardswish -> dw3x3+BN+Hardswish -> 1x1+BN. No residual (the official code drops it)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv1 = Conv2dBN(in_features, in_features, act=True)
        self.dwconv = nn.Conv2d(in_features, in_features, 3, 1, 1, bias=False, groups=in_features)
        self.norm = nn.BatchNorm2d(in_features)
        self.act = nn.Hardswish()
        self.conv2 = Conv2dBN(in_features, out_features, act=False)

    def forward(self, x):
        return self.conv2(self.act(self.norm(self.dwconv(self.conv1(x)))))


class ConvDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.dims[0]
        hidden = 4 * c
        self.mixer3 = ResBlock(8 * c, hidden)
        self.mixer2 = ResBlock(4 * c + hidden, hidden)
        self.mixer1 = ResBlock(2 * c + hidden, hidden)
        self.neck = nn.Sequential(
            nn.Conv2d(hidden + c, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def forward(self, feats: list[torch.Tensor], l_feats: torch.Tensor | None = None) -> torch.Tensor:
        c4, c3, c2, c1 = feats
        out = _up2_corners(self.mixer3(c4))
        out = _up2_corners(self.mixer2(torch.cat([out, c3], dim=1)))
        out = _up2_corners(self.mixer1(torch.cat([out, c2], dim=1)))
        return self.neck(torch.cat([out, c1], dim=1))


# ---- MambaDecoder (ReMamber_Mamba, the released variant) -----------------------------------------

class SS2DBlock(nn.Module):
    """x + SS2D(LN2d(x)) (the official VSSBlock with forward_coremm='SS2D'; no MLP)."""

    def __init__(self, dim: int, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = LayerNorm2d(dim, eps=cfg.layer_norm_eps)
        self.self_attention = SS2D(dim, cfg.d_state, cfg.ssm_ratio, eps=cfg.layer_norm_eps)

    def forward(self, x):
        return x + self.self_attention(self.ln_1(x))


class UpSample2D(nn.Module):
    """bilinear x2 (align_corners=True) -> Linear2d(d -> d/2, no bias) -> LN2d."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.proj = Linear2d(dim, dim // 2, bias=False)
        self.norm = LayerNorm2d(dim // 2, eps=eps)

    def forward(self, x):
        return self.norm(self.proj(_up2_corners(x)))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, depth: int, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.Sequential(*(SS2DBlock(dim, cfg) for _ in range(depth)))
        self.downsample = UpSample2D(dim, cfg.layer_norm_eps)

    def forward(self, x):
        return self.downsample(self.blocks(x))


class Fusion(nn.Module):
    """2 x (conv3x3 no bias + BN + ReLU) over cat[a, b]. Both inputs have the same size when S % 32 == 0."""

    def __init__(self, in_dim_1: int, in_dim_2: int, out_dim: int):
        super().__init__()
        self.fusion = nn.Sequential(
            nn.Conv2d(in_dim_1 + in_dim_2, out_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(),
            nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(),
        )

    def forward(self, a, b):
        return self.fusion(torch.cat([a, b], dim=1))


class MambaDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.dims[0]
        dims = [8 * c, 4 * c, 2 * c, c]
        depths = cfg.mamba_decoder_depths
        self.text_guidencee = nn.ModuleList(global_text(cfg.text_dim, d) for d in dims)
        self.local_text_fusion = nn.ModuleList(
            ImageTextCorr(d, cfg.text_dim, cfg.corr_hidden, d, cfg.num_tokens) for d in dims
        )
        self.multimodal_blocks = nn.ModuleList(DecoderLayer(d, n, cfg) for d, n in zip(dims, depths))
        self.in_proj = nn.ModuleList(Linear2d(3 * d, d, bias=False) for d in dims)
        self.hire_fusion = nn.ModuleList(Fusion(d // 2, d // 2, d // 2) for d in dims[:-1])
        half = dims[-1] // 2
        self.proj_out = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU()),
            nn.Conv2d(half, 1, 3, padding=1),
        )

    def forward(self, feats: list[torch.Tensor], l_feats: torch.Tensor) -> torch.Tensor:
        # BaseSegmenter calls the decoder without pooler_out, so the global text here is the BOS
        # position of the last hidden state (spec 4.2), not the EOS-pooled vector.
        bos = l_feats[:, 0]
        feat = feats[0]
        for i, layer in enumerate(self.multimodal_blocks):
            g = broadcast_hw(self.text_guidencee[i](bos), feat)
            l = self.local_text_fusion[i](feat, l_feats)
            feat = layer(self.in_proj[i](torch.cat([feat, g, l], dim=1)))
            if i + 1 < len(feats):
                skip = feats[i + 1]
                feat = self.hire_fusion[i](feat, skip) + skip
        return self.proj_out(feat)
