"""ReMamber end to end: CLIP text -> backbone with Twisters -> decoder -> logits (B, 1, S, S)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import ReMamberBackbone
from .decoders import ConvDecoder, MambaDecoder
from .inputs import validate_inputs
from .presets import ModelConfig
from .text_encoder import build_text_encoder, encode_text

# The per-stage tensors forward_and_taps returns (training's auxiliary targets read them).
FEATURE_TAPS = ("fused", "backbone", "corr")


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
        # No taps: inference and export keep no extra references to the stage tensors.
        return self._decode(*self._encode(image, input_ids, attention_mask))

    def forward_and_features(self, image, input_ids, attention_mask,
                             features: str = "fused") -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, four stage features) from one pass: training's auxiliary targets read the
        features the logits were computed from (remamber/train/objects.py). features="fused": each
        stage's output after its Twister (depends on the sentence); "backbone": each stage's VSS-block
        output before the Twister (depends on the sentence only through the earlier stages' Twisters);
        "corr": each stage's local text fusion output (ImageTextCorr: image-token products)."""
        if features not in FEATURE_TAPS:
            raise ValueError(f"features={features!r}: use one of {', '.join(map(repr, FEATURE_TAPS))}")
        logits, taps = self.forward_and_taps(image, input_ids, attention_mask)
        return logits, taps[features]

    def forward_and_taps(self, image, input_ids, attention_mask) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """(logits, {name: four stage tensors} for every name of FEATURE_TAPS) from one pass."""
        taps: dict[str, list[torch.Tensor]] = {}
        feats, l_feats = self._encode(image, input_ids, attention_mask, taps)
        taps["fused"] = feats
        return self._decode(feats, l_feats), taps

    def _decode(self, feats: list[torch.Tensor], l_feats: torch.Tensor) -> torch.Tensor:
        # BaseSegmenter's final resize to the input size (bilinear, align_corners=True) is an
        # exact identity here: both decoders already return S x S.
        return self.decoder(feats[::-1], l_feats).float()

    def _encode(self, image, input_ids, attention_mask, taps: dict | None = None):
        validate_inputs(image, input_ids, attention_mask, self.config.num_tokens)
        l_feats, pooled = self.encode_text(input_ids, attention_mask.long())
        return self.backbone(image.to(self._dtype()), l_feats, pooled, taps), l_feats

    def _dtype(self) -> torch.dtype:
        return self.backbone.patch_embed[0].weight.dtype
