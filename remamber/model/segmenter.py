"""ReMamber end to end: CLIP text -> backbone with Twisters -> decoder -> logits (B, 1, S, S)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import ReMamberBackbone
from .decoders import ConvDecoder, MambaDecoder
from .inputs import validate_inputs
from .presets import ModelConfig
from .text_encoder import build_text_encoder, encode_text


class ReMamber(nn.Module):
    """``model(image, input_ids, attention_mask) -> logits`` (float32, full input resolution).

    Attribute and module names match the official checkpoints: backbone.*, text_encoder.*, decoder.*.
    """

    def __init__(self, cfg: ModelConfig, variant: str):
        super().__init__()
        self.variant = variant
        self.preset = cfg.name
        self.config = cfg
        self.backbone = ReMamberBackbone(cfg)
        self.text_encoder = build_text_encoder(cfg.text)
        self.decoder = ConvDecoder(cfg) if variant == "conv" else MambaDecoder(cfg)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """-> (l_feats (B, T, text_dim), pooled EOS state (B, text_dim))."""
        return encode_text(self.text_encoder, input_ids, attention_mask)

    def forward_features(self, image, input_ids, attention_mask) -> list[torch.Tensor]:
        """The four stage outputs [(B,C0,S/4,S/4), ..., (B,C3,S/32,S/32)] after their Twisters."""
        return self._encode(image, input_ids, attention_mask)[0]

    def forward(self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_and_features(image, input_ids, attention_mask)[0]

    def forward_and_features(self, image, input_ids, attention_mask,
                             features: str = "fused") -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, four stage features) from one pass: training's auxiliary targets read the
        features the logits were computed from (remamber/train/objects.py). features="fused": each
        stage's output after its Twister (depends on the sentence); "backbone": each stage's VSS-block
        output before the Twister (depends on the sentence only through the earlier stages' Twisters)."""
        if features not in ("fused", "backbone"):
            raise ValueError(f"features={features!r}: use 'fused' or 'backbone'")
        # Collected only when asked: plain forward (inference, export) keeps no extra references.
        inner: list[torch.Tensor] | None = [] if features == "backbone" else None
        feats, l_feats = self._encode(image, input_ids, attention_mask, inner)
        logits = self.decoder(feats[::-1], l_feats)
        # BaseSegmenter's final resize to the input size (bilinear, align_corners=True) is an
        # exact identity here: both decoders already return S x S.
        return logits.float(), (feats if features == "fused" else inner)

    def _encode(self, image, input_ids, attention_mask, inner_out: list | None = None):
        validate_inputs(image, input_ids, attention_mask, self.config.num_tokens)
        l_feats, pooled = self.encode_text(input_ids, attention_mask.long())
        return self.backbone(image.to(self._dtype()), l_feats, pooled, inner_out), l_feats

    def _dtype(self) -> torch.dtype:
        return self.backbone.patch_embed[0].weight.dtype
