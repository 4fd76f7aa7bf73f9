"""What a serving request goes through, as plain functions: decode, check, preprocess, postprocess.

One implementation for both servers: ``remamber-deploy serve`` (PyTriton) calls it in-process, and the
Python-backend models that ``remamber-deploy triton-repo`` writes (serve/triton_models/) import it, so a
Triton fleet and ``serve`` answer the same request the same way. The maths itself is the project's:
``remamber.imageio.preprocess`` (the official resize + normalise), ``remamber.tokenizer.tokenize`` (CLIP
BPE, 20 slots) and, for the probability map, the same nearest resize + sigmoid that
``remamber.imageio.postprocess`` thresholds for ``predict``'s mask.

Every refusal is an ``InputError`` whose message names the request field, the problem and the fix; the
servers return it to the client as the request's error.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from remamber.errors import InputError

# Request tensor names (the same in `serve` and in the repository's ensemble).
IMAGE = "image"              # BYTES [1]: an encoded image file (PNG, JPEG, ...)
IMAGE_ARRAY = "image_array"  # UINT8 [H, W, 3]: an RGB array (alternative to IMAGE)
TEXT = "text"                # BYTES [1]: the referring sentence, UTF-8
LOGITS = "logits"            # FP32 [1, S, S]: the model's mask logits at the network resolution
PROBABILITY = "probability"  # FP32 [H, W]: sigmoid of the logits resized (nearest) to the image size


@dataclass(frozen=True)
class Limits:
    """What one request may carry; above these a server refuses instead of decoding."""

    max_image_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096

    def describe(self) -> str:
        return f"at most {self.max_image_bytes:,} bytes encoded and {self.max_image_pixels:,} pixels"


def _scalar_bytes(value, field: str) -> bytes:
    """The single BYTES element of a request field (numpy object/bytes array of one element, or bytes)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise InputError(f"{field} holds {value.size} elements (shape {value.shape}); send exactly one per request")
        value = value.reshape(-1)[0]
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InputError(f"{field} is a {type(value).__name__}; send it as a BYTES tensor of one element")
    return bytes(value)


def decode_text(value, field: str = TEXT) -> str:
    """The UTF-8 sentence of a request, checked by remamber.validate.text (not empty, not a document)."""
    from remamber.validate.text import check_text

    raw = _scalar_bytes(value, field)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{field} is not UTF-8 (byte 0x{raw[exc.start]:02x} at {exc.start}); encode the sentence as UTF-8") from None
    return check_text(text, field)


def decode_image(value, limits: Limits = Limits(), field: str = IMAGE):
    """An encoded image (BYTES) as an RGB PIL image, refusing empty, undecodable or oversized ones.

    The pixel count is read from the header before any pixel is decoded, so an oversized image costs
    nothing but its bytes.
    """
    from PIL import Image, UnidentifiedImageError

    from remamber.imageio import to_pil_rgb

    raw = _scalar_bytes(value, field)
    if not raw:
        raise InputError(f"{field} is empty; send the bytes of an image file (PNG, JPEG, ...)")
    if len(raw) > limits.max_image_bytes:
        raise InputError(
            f"{field} is {len(raw):,} bytes, above this server's limit ({limits.describe()}); send a smaller image"
        )
    try:
        with Image.open(io.BytesIO(raw)) as img:
            pixels = img.width * img.height
            if pixels > limits.max_image_pixels or img.width < 1 or img.height < 1:
                raise InputError(
                    f"{field} is {img.width}x{img.height} = {pixels:,} pixels, outside this server's limit "
                    f"({limits.describe()}); downscale it before sending (the model sees it at its input "
                    "resolution anyway)"
                )
            img.load()
            return to_pil_rgb(img)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise InputError(
            f"{field} ({len(raw):,} bytes) cannot be decoded as an image: {exc}; send an intact PNG or JPEG file's bytes"
        ) from None


def image_from_array(array, limits: Limits = Limits(), field: str = IMAGE_ARRAY):
    """An HxWx3 uint8 RGB array as a PIL image, refusing other dtypes/shapes and oversized arrays."""
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:  # a batched request of one image
        array = array[0]
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"{field} has shape {array.shape} and dtype {array.dtype}; send an HxWx3 uint8 RGB array")
    height, width = array.shape[:2]
    if height < 1 or width < 1 or height * width > limits.max_image_pixels:
        raise InputError(
            f"{field} is {width}x{height} pixels, outside this server's limit ({limits.describe()}); downscale it"
        )
    return Image.fromarray(np.ascontiguousarray(array))


def request_image(inputs: dict, limits: Limits = Limits()):
    """The image of one request: exactly one of IMAGE (encoded) or IMAGE_ARRAY (pixels)."""
    has_bytes = inputs.get(IMAGE) is not None
    has_array = inputs.get(IMAGE_ARRAY) is not None
    if has_bytes == has_array:
        raise InputError(
            f"send exactly one of {IMAGE!r} (the encoded file, BYTES) or {IMAGE_ARRAY!r} (HxWx3 UINT8 pixels); "
            f"got {'both' if has_bytes else 'neither'}"
        )
    return decode_image(inputs[IMAGE], limits) if has_bytes else image_from_array(inputs[IMAGE_ARRAY], limits)


def preprocess(images: list, texts: list[str], size: int, tokenizer_path=None) -> dict[str, np.ndarray]:
    """Network feeds for a batch: image (B,3,S,S) float32, input_ids / attention_mask (B,20) int64."""
    import torch

    from remamber import imageio, tokenizer
    from remamber.validate.tokens import check_feeds

    if len(images) != len(texts) or not images:
        raise InputError(f"a batch needs one sentence per image (got {len(images)} images and {len(texts)} sentences)")
    pixels = torch.cat([imageio.preprocess(img, size) for img in images], dim=0)
    input_ids, attention_mask = tokenizer.tokenize(list(texts), tokenizer_path=tokenizer_path)
    feeds = {
        "image": np.ascontiguousarray(pixels.numpy(), dtype=np.float32),
        "input_ids": np.ascontiguousarray(np.asarray(input_ids), dtype=np.int64),
        "attention_mask": np.ascontiguousarray(np.asarray(attention_mask), dtype=np.int64),
    }
    check_feeds(feeds, source="server request")
    return feeds


def probability_map(logits, height: int, width: int) -> np.ndarray:
    """float32 (H, W): sigmoid of one image's logits (1,S,S) or (1,1,S,S), nearest-resized to H x W.

    The same resize and sigmoid as ``remamber.imageio.postprocess``; ``predict``'s mask is this map > 0.5.
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[:2] != (1, 1):
        raise InputError(f"logits have shape {tuple(t.shape)}; expected one image's (1, S, S) or (1, 1, S, S)")
    if int(height) < 1 or int(width) < 1:
        raise InputError(f"image size {height}x{width} must be positive")
    resized = F.interpolate(t, size=(int(height), int(width)))  # default "nearest", as the official evaluate
    return torch.sigmoid(resized)[0, 0].numpy().astype(np.float32, copy=False)
