"""remamber-deploy: ReMamber to ONNX Runtime and TensorRT with a SelectiveScan custom op."""

__version__ = "0.1.0"


def build_model(variant: str = "conv", preset: str = "base", seed: int = 0, scan_op: str = "fused"):
    """Build ReMamber (``variant`` "conv" = paper, "mamba" = released) at a preset ("base", "tiny").

    Seeded random initialisation that follows the official init; returns the model in eval mode.
    ``scan_op``: "fused" (one remamber::ss2d_scan per SS2D) or "selective" (v1 graphs).
    """
    from .model import build_model as _build

    return _build(variant=variant, preset=preset, seed=seed, scan_op=scan_op)
