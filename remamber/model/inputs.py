"""Input validation inside ``ReMamber.forward``: static shape and dtype checks only.

These read only Python-side metadata (shapes, dtypes), so they never sync with the device and are
static under torch.export, dynamo and CUDA-graph capture. Checks on VALUES (finite pixels, token ids
inside the vocabulary, 0/1 attention mask, batch 0) live in ``remamber.validate.tokens``: every entry
point runs them once before any runtime, so torch, ONNX Runtime and TensorRT refuse the same inputs
the same way. Python API users feeding their own tensors call
``remamber.validate.tokens.check_model_inputs(image, input_ids, attention_mask)`` first.
"""

from __future__ import annotations

import torch

from ..errors import InputError

SIZE_MULTIPLE = 32
TOKENIZE_HINT = "tokenize with remamber.tokenizer.tokenize"


def nearby_sizes(size: int) -> str:
    lower = (size // SIZE_MULTIPLE) * SIZE_MULTIPLE
    candidates = [s for s in (lower, lower + SIZE_MULTIPLE) if s > 0]
    return " or ".join(str(s) for s in candidates)


def validate_inputs(image, input_ids, attention_mask, num_tokens: int) -> None:
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image must be a torch.Tensor (B,3,S,S) float32, got {type(image).__name__}")
    if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] != image.shape[3]:
        raise InputError(
            f"image must have shape (batch, 3, S, S) (a square RGB batch), got {tuple(image.shape)}; "
            "preprocess it with remamber.imageio.preprocess(image, size)"
        )
    if not image.is_floating_point():
        raise InputError(f"image must be a float tensor (float32), got {image.dtype}; normalise it with remamber.imageio.preprocess")
    size = image.shape[-1]
    if isinstance(size, int) and size % SIZE_MULTIPLE != 0:
        raise InputError(
            f"image size {size} is not a multiple of {SIZE_MULTIPLE} (ReMamber's decoders need it); "
            f"resize to {nearby_sizes(size)}"
        )
    batch = image.shape[0]
    if isinstance(batch, int) and batch == 0:  # a concrete shape only: symbolic batches stay unguarded
        raise InputError("image has batch 0: there is nothing to segment; pass at least one image")
    for name, t in (("input_ids", input_ids), ("attention_mask", attention_mask)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor ({batch}, {num_tokens}) int64, got {type(t).__name__}; {TOKENIZE_HINT}")
    if input_ids.dim() != 2 or input_ids.shape[1] != num_tokens:
        raise InputError(
            f"input_ids must have shape (batch, {num_tokens}), got {tuple(input_ids.shape)}: ReMamber needs exactly "
            f"{num_tokens} token slots; {TOKENIZE_HINT}"
        )
    if input_ids.dtype != torch.int64:
        raise InputError(f"input_ids must be int64, got {input_ids.dtype}; {TOKENIZE_HINT} (or .long())")
    if input_ids.shape[0] != batch:
        raise InputError(f"input_ids has batch {input_ids.shape[0]} but image has batch {batch}; pass one sentence per image")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise InputError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}; "
            f"{TOKENIZE_HINT}"
        )
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise InputError(f"attention_mask must be an integer tensor (int64), got {attention_mask.dtype}; {TOKENIZE_HINT}")
