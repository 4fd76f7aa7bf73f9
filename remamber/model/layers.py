"""Small building blocks shared by the backbone, the Twister and the decoders (channel-first NCHW)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Linear2d(nn.Linear):
    """A per-pixel Linear on NCHW tensors.

    The weight stays 2-D (out, in) as in the official checkpoints (VMamba's Linear2d); the forward
    is a 1x1 convolution, which exports as one ONNX Conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (VMamba's "ln2d").

    Computes in the input's dtype with the affine parameters cast to it, so the fp32 scan output
    can be normalised in fp32 even when the module's weights are half precision (spec 5.1).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        weight = None if self.weight is None else self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        x = F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    """Linear2d -> GELU -> Linear2d (VMamba Mlp, channel-first, with biases)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def broadcast_hw(vec: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, C, H, W) with the spatial size of ``like`` (einops.repeat in the original)."""
    return vec[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])
