"""Per-stage tensors to mark as extra outputs, to see where a divergence starts.

``default_intermediates(model)`` names, in dataflow order: the four backbone stage outputs (after
their Twisters; what the decoder consumes) and the decoder's last feature map before its output
head (ConvDecoder: ``mixer1`` at S/4; MambaDecoder: the last decoder layer at S/2). The full
resolution head input is skipped on purpose: at 1024 it would be a multi-GB output.
"""

from __future__ import annotations

import torch.nn as nn

from remamber.errors import InputError


def default_intermediates(model: nn.Module) -> dict:
    """name -> submodule or (submodule, index) for ``onnx_export.ExportWrapper``."""
    backbone = getattr(model, "backbone", None)
    decoder = getattr(model, "decoder", None)
    if backbone is None or decoder is None:
        raise InputError(
            f"cannot mark intermediates on {type(model).__name__}: expected a ReMamber model with "
            f".backbone and .decoder (from remamber.build_model)"
        )
    marks: dict = {f"stage{i}": (backbone, i) for i in range(4)}
    if hasattr(decoder, "mixer1"):
        marks["decoder"] = decoder.mixer1
    elif hasattr(decoder, "multimodal_blocks"):
        marks["decoder"] = decoder.multimodal_blocks[-1]
    else:
        raise InputError(f"unknown decoder {type(decoder).__name__}: cannot mark its output")
    return marks
