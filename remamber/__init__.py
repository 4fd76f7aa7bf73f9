"""remamber-deploy: ReMamber to ONNX Runtime and TensorRT with a SelectiveScan custom op."""

__version__ = "0.1.0"


def build_model(variant: str = "conv", preset: str = "base", seed: int = 0):
    """Build ReMamber (``variant`` "conv" = paper, "mamba" = released) at a preset ("base", "tiny").

    Seeded random initialisation that follows the official init; returns the model in eval mode.
    """
    from .model import build_model as _build

    return _build(variant=variant, preset=preset, seed=seed)
