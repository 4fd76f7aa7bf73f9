"""Model presets: the published ReMamber size ("base") and a small structural twin ("tiny").

Every number that shapes the network lives here, so the modules read a config instead of
hard-coding VMamba-B sizes. ``base`` reproduces the released checkpoints exactly (REMAMBER_SPEC
1.2, 2, 4; the key/shape lists in shared/data). ``tiny`` keeps every structural feature (4
stages, a 2-block Twister per stage, both decoders, 20 token slots, N = 1, four scan directions,
channel scan on a 16x16 grid) at a size a 1024x1024 CPU forward finishes in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError


@dataclass(frozen=True)
class TextConfig:
    """CLIP text tower (transformers ``CLIPTextConfig`` fields)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    # Real CLIP token ids must stay valid: vocabulary and positions are those of CLIP.
    vocab_size: int = 49408
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dims: tuple[int, int, int, int] = (128, 256, 512, 1024)
    depths: tuple[int, int, int, int] = (2, 2, 15, 2)  # VMamba VSS blocks per stage
    d_state: int = 1  # N
    ssm_ratio: float = 2.0  # d_inner = ssm_ratio * C
    mlp_ratio: float = 4.0
    twister_depth: int = 2  # Twister blocks per stage (customized_model.py: depth=2)
    channel_scan_res: int = 16  # Twister resizes the cube to this square before the channel scan
    corr_hidden: int = 512  # ImageTextCorr hidden width
    num_tokens: int = 20  # token slots; baked into ImageTextCorr's Conv2d(20 -> hidden)
    mamba_decoder_depths: tuple[int, int, int, int] = (2, 4, 2, 2)
    layer_norm_eps: float = 1e-5
    text: TextConfig = field(default_factory=TextConfig)

    @property
    def text_dim(self) -> int:
        return self.text.hidden_size

    @staticmethod
    def dt_rank(d_model: int) -> int:
        """VMamba's dt_rank="auto": ceil(d_model / 16)."""
        return math.ceil(d_model / 16)

    def scan_calls(self, variant: str) -> int:
        """Selective-scan calls per forward (one call covers all 4 directions; spec 5.2)."""
        backbone = sum(self.depths)
        twister = 2 * self.twister_depth * len(self.dims)  # spatial + channel scan per block
        decoder = sum(self.mamba_decoder_depths) if variant == "mamba" else 0
        return backbone + twister + decoder


BASE = ModelConfig(name="base")

TINY = ModelConfig(
    name="tiny",
    dims=(16, 32, 64, 128),
    depths=(1, 1, 2, 1),
    d_state=1,
    twister_depth=2,
    channel_scan_res=16,
    corr_hidden=32,
    num_tokens=20,
    mamba_decoder_depths=(1, 2, 1, 1),
    text=TextConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
)

PRESETS: dict[str, ModelConfig] = {"base": BASE, "tiny": TINY}
VARIANTS: tuple[str, ...] = ("conv", "mamba")


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise InputError(f"unknown model preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
