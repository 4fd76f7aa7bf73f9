"""Half-precision export: the model in float16 with the parts that must stay float32 kept float32.

How (and why this route rather than converting the fp32 ONNX afterwards): the PyTorch model is
converted to fp16 *before* export, so every dtype in the graph is decided by PyTorch's own type
rules and the exporter writes explicit Casts; the result is a strongly typed graph that needs no
precision flags (TensorRT 11 / TensorRT-RTX STRONGLY_TYPED). A post-hoc ONNX converter
(onnxconverter-common) cannot know that ``remamber::SelectiveScan`` wants fp16 u/delta/B/C but fp32
A/D/delta_bias, so it would either up-cast the scan's activations (losing the fp16 bandwidth the
plugin exists for) or round A/D/delta_bias; it would also be one more dependency.

Kept in float32:
- the scan parameters that feed the op's fp32-only inputs: ``A_logs`` (A = -exp(A_logs)), ``Ds``,
  ``dt_projs_bias`` -- the official checkpoint's parameter names (REMAMBER_SPEC 6.1); the model
  casts them with ``.float()`` before the call, so storing them in fp32 means no rounding at all;
- the scan's state and output (inside the op; output float32 by contract) and the cross-merge of
  its output (the model merges the fp32 output before casting);
- every LayerNorm (``nn.LayerNorm`` and subclasses such as LayerNorm2d): weights stay fp32, a
  forward pre-hook casts the input to fp32 and a forward hook casts the result to fp16, so mean and
  variance are computed in fp32 (TensorRT's fp16 LayerNorm overflow warning does not apply);
- softplus inside the op (it runs on the fp32 dt);
- the graph's inputs and outputs (``HalfPrecisionModel`` casts image to fp16 and logits to fp32),
  so users feed the same data to fp32 and fp16 graphs.

``graph_checks.check_fp16_typing`` verifies the result on the ONNX graph, so a model change that
breaks one of these rules fails the export instead of silently losing precision.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

# Parameter names (last component) that flow into the scan's float32-only inputs A, D, delta_bias.
FP32_PARAMETER_NAMES = frozenset({"A_logs", "Ds", "dt_projs_bias"})


def _to_fp32_input(module, args):
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _to_fp16_output(module, args, output):
    return output.half() if torch.is_tensor(output) and output.is_floating_point() else output


class HalfPrecisionModel(nn.Module):
    """fp16 copy of a ReMamber model behind fp32 I/O: (image fp32, ids, mask) -> logits fp32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(image.half(), input_ids, attention_mask).float()


def to_half_precision(model: nn.Module, copy_model: bool = True) -> HalfPrecisionModel:
    """Return the fp16 model with the fp32 islands described in the module docstring."""
    if copy_model:
        model = copy.deepcopy(model)
    model = model.half()
    kept = 0
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name in FP32_PARAMETER_NAMES:
                param.data = param.data.float()
                kept += 1
        if isinstance(module, nn.LayerNorm):
            module.float()
            module.register_forward_pre_hook(_to_fp32_input)
            module.register_forward_hook(_to_fp16_output)
    wrapped = HalfPrecisionModel(model).eval()
    wrapped.fp32_scan_parameters = kept
    for attr in ("variant", "preset"):
        if hasattr(model, attr):
            setattr(wrapped, attr, getattr(model, attr))
    return wrapped
