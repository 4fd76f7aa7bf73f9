"""Data-dependent checks of the model's inputs, run once before any runtime (torch, ORT, TensorRT).

Why here and not in ``ReMamber.forward``: checking values (finite pixels, token-id range) needs a
device->host sync, which breaks CUDA-graph capture and ``torch.compile(fullgraph=True)``, and ONNX
Runtime / TensorRT never run the PyTorch forward at all (ORT's Gather silently wraps id -1, PyTorch
raises IndexError). Every entry point calls :func:`check_model_inputs` on the arrays it is about to
feed, so the three runtimes refuse the same inputs with the same message. The forward keeps only
the static shape/dtype checks of ``remamber.model.inputs``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

VOCAB_SIZE = 49408  # CLIP's vocabulary (remamber.model.presets.TextConfig.vocab_size)
NUM_TOKENS = 20     # ReMamber's token slots
TOKENIZE_HINT = "tokenize with remamber.tokenizer.tokenize"


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    raise InputError(f"{name} must be a numpy array or torch.Tensor, got {type(x).__name__}; {TOKENIZE_HINT}")


def check_model_inputs(image, input_ids, attention_mask, *, vocab_size: int = VOCAB_SIZE,
                       num_tokens: int = NUM_TOKENS, source: str = "") -> None:
    """Refuse model inputs that some runtime would run silently and another would reject.

    ``image`` (B,3,S,S) float, ``input_ids`` / ``attention_mask`` (B,num_tokens) integer, as numpy
    arrays or torch tensors (any device). ``source`` names where they came from in the message.
    """
    where = f" ({source})" if source else ""
    image = _as_numpy(image, "image")
    ids = _as_numpy(input_ids, "input_ids")
    mask = _as_numpy(attention_mask, "attention_mask")
    if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] != image.shape[3]:
        raise InputError(
            f"image{where} must have shape (batch, 3, S, S), got {tuple(image.shape)}; "
            "preprocess it with remamber.imageio.preprocess(image, size)"
        )
    batch = image.shape[0]
    if batch == 0:
        raise InputError(f"image{where} has batch 0: there is nothing to segment; pass at least one image")
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"image{where} must be float32, got {image.dtype}; normalise it with remamber.imageio.preprocess")
    finite = np.isfinite(image)
    if not finite.all():
        bad = sorted({int(i) for i in np.nonzero(~finite.reshape(batch, -1).all(axis=1))[0]})
        raise InputError(
            f"image{where} contains NaN or Inf values (batch item(s) {bad[:8]}); "
            "check the image file and its preprocessing"
        )
    for name, arr in (("input_ids", ids), ("attention_mask", mask)):
        if arr.ndim != 2 or arr.shape[1] != num_tokens:
            raise InputError(
                f"{name}{where} must have shape (batch, {num_tokens}), got {tuple(arr.shape)}; {TOKENIZE_HINT}"
            )
        if arr.shape[0] != batch:
            raise InputError(
                f"{name}{where} has batch {arr.shape[0]} but image has batch {batch}; pass one sentence per image"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{name}{where} must be int64, got {arr.dtype}; {TOKENIZE_HINT}")
    out_of_range = (ids < 0) | (ids >= vocab_size)
    if out_of_range.any():
        row, col = (int(v) for v in np.argwhere(out_of_range)[0])
        raise InputError(
            f"input_ids{where} holds token id {int(ids[row, col])} at [{row}, {col}], outside CLIP's vocabulary "
            f"0..{vocab_size - 1}; {TOKENIZE_HINT}"
        )
    if not np.isin(mask, (0, 1)).all():
        bad = sorted({int(v) for v in np.unique(mask) if v not in (0, 1)})
        raise InputError(f"attention_mask{where} must hold only 0 and 1, found {bad[:8]}; {TOKENIZE_HINT}")
    empty = np.nonzero(~mask.astype(bool).any(axis=1))[0]
    if empty.size:
        raise InputError(
            f"attention_mask{where} row {int(empty[0])} is all zeros: that sentence has no tokens; {TOKENIZE_HINT}"
        )


def check_feeds(feeds: dict, **kwargs) -> None:
    """:func:`check_model_inputs` on a runtime feed dict {"image", "input_ids", "attention_mask"}."""
    missing = [n for n in ("image", "input_ids", "attention_mask") if n not in feeds]
    if missing:
        raise InputError(f"model inputs are missing {missing}; feed image, input_ids and attention_mask")
    check_model_inputs(feeds["image"], feeds["input_ids"], feeds["attention_mask"], **kwargs)
