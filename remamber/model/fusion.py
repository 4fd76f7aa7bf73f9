"""Vision-language fusion: ImageTextCorr (local text), the global text term, and the Twister.

Spec sections 3.2 (Twister) and 3.3 (ImageTextCorr). All tensors are NCHW except the text
features ``l_feats`` (B, T=20, text_dim), the CLIP last hidden state.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import LayerNorm2d
from .ss2d import SS2D


class ImageTextCorr(nn.Module):
    """Local interaction F_c: per-pixel dot products with all T token slots, then conv projection.

    v = GELU(Linear(C->h)(img)), t = GELU(Linear(text->h)(l_feats)), cost = v . t (B,T,H,W) with no
    mask, no scaling, padding slots included; out = Linear(h->C)(GELU(Conv3x3(T->h)(cost))).
    """

    def __init__(self, visual_dim: int, text_dim: int, hidden_dim: int, out_dim: int, num_tokens: int):
        super().__init__()
        self.vis_proj = nn.Sequential(nn.Linear(visual_dim, hidden_dim), nn.GELU())
        self.text_proj = nn.Sequential(nn.Linear(text_dim, hidden_dim), nn.GELU())
        self.unsqueeze = nn.Sequential(nn.Conv2d(num_tokens, hidden_dim, 3, 1, 1), nn.GELU())
        self.out_proj = nn.Linear(hidden_dim, out_dim)

    def forward(self, img: torch.Tensor, l_feats: torch.Tensor) -> torch.Tensor:
        vis = self.vis_proj(img.permute(0, 2, 3, 1))  # (B, H, W, h)
        txt = self.text_proj(l_feats)  # (B, T, h)
        cost = torch.matmul(vis, txt.transpose(1, 2).unsqueeze(1))  # (B, H, W, T)
        feat = self.unsqueeze(cost.permute(0, 3, 1, 2))  # (B, h, H, W)
        return self.out_proj(feat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, H, W)


def global_text(text_dim: int, dim: int) -> nn.Sequential:
    """text_guidencee[s]: Sequential(Linear(text_dim, C), ReLU) -> keys '<s>.0.weight/bias'."""
    return nn.Sequential(nn.Linear(text_dim, dim), nn.ReLU())


class Twister(nn.Module):
    """Channel scan over the hybrid cube, then the spatial scan (customized_model.Twister)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, channel_res: int, eps: float):
        super().__init__()
        self.channel_res = channel_res
        # Spatial scan: v4noz SS2D whose in_proj reads the 3C cube.
        self.ss2d = SS2D(dim, d_state, ssm_ratio, in_dim=3 * dim, gated=False, layout="cross", eps=eps)
        # Channel scan: the res*res grid positions are its channels, the 3C axis its sequence.
        self.ss1d = SS2D(channel_res**2, d_state, ssm_ratio, gated=True, layout="bidi", eps=eps)

    def forward(self, img: torch.Tensor, g: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        cube = torch.cat([img, g, l], dim=1)  # (B, 3C, H, W)
        height, width = cube.shape[2], cube.shape[3]
        res = self.channel_res
        t = F.interpolate(cube, size=(res, res), mode="bilinear", align_corners=False)
        t = t.flatten(2).transpose(1, 2).unsqueeze(2)  # (B, res*res, 1, 3C)
        t = self.ss1d(t)
        t = t.squeeze(2).transpose(1, 2).unflatten(2, (res, res))  # (B, 3C, res, res)
        t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
        return self.ss2d(t + cube)


class TwisterBlock(nn.Module):
    """One shared ln_1 for image, global and local text; text branches accumulate g + LN(g)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, channel_res: int, eps: float):
        super().__init__()
        self.ln_1 = LayerNorm2d(dim, eps=eps)
        self.self_attention = Twister(dim, d_state, ssm_ratio, channel_res, eps)

    def forward(self, img, g, l):
        ni, ng, nl = self.ln_1(img), self.ln_1(g), self.ln_1(l)
        return img + self.self_attention(ni, ng, nl), g + ng, l + nl


class TwisterLayer(nn.Module):
    """multimodal_blocks[s]: ``depth`` Twister blocks; only the image stream leaves the layer."""

    def __init__(self, dim: int, depth: int, d_state: int, ssm_ratio: float, channel_res: int, eps: float):
        super().__init__()
        self.blocks = nn.ModuleList(TwisterBlock(dim, d_state, ssm_ratio, channel_res, eps) for _ in range(depth))

    def forward(self, img: torch.Tensor, g: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            img, g, l = block(img, g, l)
        return img

