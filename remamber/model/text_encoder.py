"""The CLIP text tower, built from a config (never downloaded; weights come from a checkpoint).

ReMamber uses transformers' ``CLIPTextModel`` (ViT-L/14 text tower for "base"): the final-LN
last hidden state ``l_feats`` (B, 20, width), and ``pooler_out``, the final-LN hidden state at
the first EOS. The official transformers 4.35 config has the legacy eos_token_id == 2, so the
EOS position is argmax(input_ids) (spec 2); we compute that gather ourselves so the result does
not depend on the transformers version. No text projection is applied.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import transformers
from transformers import CLIPTextConfig, CLIPTextModel

from .presets import TextConfig


class TextTower(nn.Module):
    """Holds the CLIP text transformer under the name ``text_model``.

    transformers < 5 wraps the transformer in ``CLIPTextModel.text_model``; transformers 5 puts
    embeddings/encoder/final_layer_norm directly on ``CLIPTextModel``. The checkpoints use the
    4.x names (text_encoder.text_model.*), so with 5.x we add that level ourselves.
    """

    def __init__(self, text_model: nn.Module):
        super().__init__()
        self.text_model = text_model

    def forward(self, input_ids, attention_mask):
        return self.text_model(input_ids=input_ids, attention_mask=attention_mask)


def build_text_encoder(cfg: TextConfig) -> nn.Module:
    config = CLIPTextConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        projection_dim=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_act=cfg.hidden_act,
        layer_norm_eps=cfg.layer_norm_eps,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    # "eager" attention is plain matmul + softmax: identical maths, and it exports to ONNX
    # without depending on a fused-attention lowering.
    config._attn_implementation = "eager"
    model = CLIPTextModel(config)
    return model if hasattr(model, "text_model") else TextTower(model)


# transformers >= 5 takes a ready 4D additive mask as is (masking_utils: "returned as-is"); 4.x
# expects the 2D padding mask and builds the causal part itself.
_ACCEPTS_4D_MASK = int(transformers.__version__.split(".")[0]) >= 5


def additive_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 0/1 padding mask -> (B, 1, T, T) additive mask for eager attention: 0 where key k <= query q
    and attention_mask[b, k] != 0, finfo(dtype).min elsewhere (what transformers' eager_mask builds).

    Built here, from device-side ops only, because transformers 5.17's eager_mask makes its zero with
    ``torch.tensor(0.0, device=...)``: a pageable host-to-device copy inside the forward, which breaks
    CUDA-graph capture (measured on the H200, bench/results/h200-2026-11-29).
    """
    length = attention_mask.shape[-1]
    pos = torch.arange(length, device=attention_mask.device)
    allowed = (pos[None, :] <= pos[:, None])[None, None] & (attention_mask != 0)[:, None, None, :]
    return torch.zeros_like(allowed, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def encode_text(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """-> (l_feats (B, T, width), pooled (B, width)): last hidden state and its value at argmax(ids)."""
    if _ACCEPTS_4D_MASK:
        dtype = encoder.text_model.embeddings.token_embedding.weight.dtype  # transformers: inputs_embeds.dtype
        attention_mask = additive_attention_mask(attention_mask, dtype)
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    # First maximal id = first EOS (49407) for CLIP tokenizations. int32 because ONNX Runtime's
    # ArgMax has no int64 kernel; token ids are < 49408.
    eos = input_ids.to(torch.int32).argmax(dim=-1)
    pooled = hidden.gather(1, eos[:, None, None].expand(-1, 1, hidden.shape[-1])).squeeze(1)
    return hidden, pooled
