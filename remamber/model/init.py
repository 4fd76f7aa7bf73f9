"""Seeded initialisation that follows the official code (spec 1.2).

Order of events in the official constructors, reproduced here in kind (not RNG stream):
- every module gets PyTorch's default init when it is built;
- each SS2D applies the Mamba "v0" init (SS2D.reset_ssm_parameters, done in its constructor);
- VSSM.__init__ re-initialises the VMamba part (patch_embed, layers) before ReMamber adds its
  fusion modules: trunc_normal(std 0.02) on every Linear / Linear2d weight, zero Linear biases,
  LayerNorm weight 1 / bias 0. The Twister, text and decoder modules keep the default init;
- ConvDecoder ResBlocks: every conv ~ normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups,
  BatchNorm weight 1 / bias 0;
- the CLIP text tower uses transformers' own init (it is replaced by checkpoint weights anyway).
"""

from __future__ import annotations

import math

import torch.nn as nn


def init_vmamba_part(module: nn.Module) -> None:
    """VSSM._init_weights applied to patch_embed and layers."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_resblock(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
