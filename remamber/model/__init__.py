"""The ReMamber model in PyTorch: both official variants at two presets.

``build_model(variant, preset, seed)``: "conv" = ReMamber_Conv (paper, ConvDecoder), "mamba" =
ReMamber_Mamba (released, MambaDecoder); presets "base" (the published size) and "tiny" (same
structure, small). Returns the model in eval mode with attributes ``variant``, ``preset``, ``config``.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .init import init_resblock, init_vmamba_part
from .presets import PRESETS, VARIANTS, ModelConfig, TextConfig, get_preset
from .segmenter import ReMamber
from .ss2d import SCAN_OPS, set_scan_op

__all__ = [
    "PRESETS", "SCAN_OPS", "VARIANTS", "ModelConfig", "ReMamber", "TextConfig", "build_model", "get_preset",
    "set_scan_op",
]


def build_model(variant: str = "conv", preset: str = "base", seed: int = 0, scan_op: str = "fused") -> ReMamber:
    """scan_op: "fused" (one remamber::ss2d_scan per SS2D) or "selective" (v1 layout ops + selective_scan)."""
    if variant not in VARIANTS:
        raise InputError(f"unknown model variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    cfg = get_preset(preset)
    # Fork the RNG so building a model neither depends on nor disturbs the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ReMamber(cfg, variant)
        init_vmamba_part(model.backbone.patch_embed)
        init_vmamba_part(model.backbone.layers)
        if variant == "conv":
            for block in (model.decoder.mixer3, model.decoder.mixer2, model.decoder.mixer1):
                init_resblock(block)
    return set_scan_op(model, scan_op).eval()
