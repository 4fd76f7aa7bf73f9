"""The visual backbone: VMamba-B v2 with a Mamba Twister after every stage (spec 3.1).

Module names follow the official ``ReMamber`` (a VSSM subclass) so state_dict keys match the
released checkpoints: patch_embed.{0,2,5,7}, layers.{s}.blocks.{j}.{norm,op,norm2,mlp},
layers.{s}.downsample.{1,3}, text_guidencee.{s}.0, local_text_fusion.{s}, multimodal_blocks.{s}.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .fusion import ImageTextCorr, TwisterLayer, global_text
from .layers import LayerNorm2d, Mlp, broadcast_hw
from .presets import ModelConfig
from .ss2d import SS2D


class VSSBlock(nn.Module):
    """x + SS2D(LN2d(x)), then x + Mlp(LN2d(x)) (VMamba VSSBlock, no post-norm; DropPath = identity in eval)."""

    def __init__(self, dim: int, cfg: ModelConfig):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=cfg.layer_norm_eps)
        self.op = SS2D(dim, cfg.d_state, cfg.ssm_ratio, eps=cfg.layer_norm_eps)
        self.norm2 = LayerNorm2d(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.op(self.norm(x))
        return x + self.mlp(self.norm2(x))


def patch_embed_v2(dim: int, eps: float) -> nn.Sequential:
    """conv3x3 s2 (3 -> C/2) -> LN2d -> GELU -> conv3x3 s2 (C/2 -> C) -> LN2d.

    The Identity slots stand where VMamba puts its (channel-last) Permutes, so indices 0, 2, 5, 7
    carry the parameters as in the checkpoints.
    """
    return nn.Sequential(
        nn.Conv2d(3, dim // 2, 3, 2, 1),
        nn.Identity(),
        LayerNorm2d(dim // 2, eps=eps),
        nn.Identity(),
        nn.GELU(),
        nn.Conv2d(dim // 2, dim, 3, 2, 1),
        nn.Identity(),
        LayerNorm2d(dim, eps=eps),
    )


def downsample_v3(dim: int, out_dim: int, eps: float) -> nn.Sequential:
    """conv3x3 s2 p1 (C -> 2C, with bias) -> LN2d; keys downsample.1 and downsample.3."""
    return nn.Sequential(nn.Identity(), nn.Conv2d(dim, out_dim, 3, 2, 1), nn.Identity(), LayerNorm2d(out_dim, eps=eps))


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, next_dim: int | None, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.Sequential(*(VSSBlock(dim, cfg) for _ in range(depth)))
        # The last stage has nn.Identity in VMamba (no parameters, no keys).
        self.downsample = downsample_v3(dim, next_dim, cfg.layer_norm_eps) if next_dim else nn.Identity()


class ReMamberBackbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims = cfg.dims
        eps = cfg.layer_norm_eps
        self.patch_embed = patch_embed_v2(dims[0], eps)
        self.layers = nn.ModuleList(
            Stage(dims[s], cfg.depths[s], dims[s + 1] if s + 1 < len(dims) else None, cfg) for s in range(len(dims))
        )
        # The official code reinitialises the VMamba part here (VSSM.__init__), before the fusion
        # modules exist; remamber.model.init does the same.
        self.text_guidencee = nn.ModuleList(global_text(cfg.text_dim, d) for d in dims)
        self.local_text_fusion = nn.ModuleList(
            ImageTextCorr(d, cfg.text_dim, cfg.corr_hidden, d, cfg.num_tokens) for d in dims
        )
        self.multimodal_blocks = nn.ModuleList(
            TwisterLayer(d, cfg.twister_depth, cfg.d_state, cfg.ssm_ratio, cfg.channel_scan_res, eps) for d in dims
        )

    def forward(self, image: torch.Tensor, l_feats: torch.Tensor, pooled: torch.Tensor,
                taps: dict | None = None) -> list[torch.Tensor]:
        """image (B,3,S,S), l_feats (B,T,text_dim), pooled (B,text_dim) -> 4 stage features (B,C_s,S/2^(s+2),.).

        taps: when a dict, it receives per stage, in lists, "backbone": the VSS-block output (before
        the Twister fuses the text) and "corr": the local text fusion's output (ImageTextCorr, the
        per-pixel image-token products); training's auxiliary targets can read those
        (remamber/train/objects.py)."""
        x = self.patch_embed(image)
        outs = []
        for s, stage in enumerate(self.layers):
            inner = stage.blocks(x)
            # The official forward_layer also downsamples `inner` here and discards the result.
            g = broadcast_hw(self.text_guidencee[s](pooled), inner)
            l = self.local_text_fusion[s](inner, l_feats)
            if taps is not None:
                taps.setdefault("backbone", []).append(inner)
                taps.setdefault("corr", []).append(l)
            img = self.multimodal_blocks[s](inner, g, l)
            outs.append(img)
            x = stage.downsample(img)
        return outs
