"""Image input and mask output for ReMamber, following the official pre- and post-processing.

Pre-processing (REMAMBER_SPEC.md 4.3): resize to S x S without keeping the aspect ratio, bilinear
with antialias, ToTensor (/255), normalise with the ImageNet mean and std. The official code calls
torchvision's ``F.resize`` on a PIL image, which is ``PIL.Image.resize(..., BILINEAR)`` (PIL's
bilinear filter widens its support when shrinking, i.e. antialias). We call PIL directly because
torchvision does not import beside this project's torch (TOOLCHAIN.md).

Image modes (``to_rgb``): 8-bit modes Pillow converts exactly (1, L, P, RGB, RGBA, RGBX, CMYK, YCbCr,
LAB, HSV, LA, PA, RGBa) go through ``convert("RGB")`` as in the official loader (alpha is dropped, not
composited). Modes Pillow would silently clip to 0..255 are rescaled first: 16-bit integer images
("I;16", "I;16B", "I;16L", "I;16N", and "I" holding values in 0..65535, which is how Pillow opens a
16-bit PNG) by 255/65535; 32-bit float images ("F") are read as intensities in [0, 1] and scaled by 255,
and refused when they hold NaN/Inf or values outside [0, 1]. Any other mode is refused with the mode named.

Post-processing (official ``evaluate``): nearest resize of the logits to the original size
(``F.interpolate`` default mode), then ``sigmoid > 0.5``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path
from .errors import InputError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE_MULTIPLE = 32  # the backbone downsamples by 32


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB (like the official loader: no EXIF rotation is applied)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"image file {str(p)!r} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"image path {str(p)!r} is not a file: give an image file (PNG, JPEG, ...)")
    try:
        with Image.open(p) as img:
            img.load()
            return to_rgb(img, f"image {str(p)!r}")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"cannot read image {str(p)!r}: {exc}; give an intact image file in a format Pillow reads (PNG, JPEG, ...)"
        ) from exc


EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "RGBa")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def to_rgb(img: Image.Image, what: str = "image") -> Image.Image:
    """An RGB image with the mode's full range mapped to 0..255 (see the module docstring)."""
    if img.width < 1 or img.height < 1:
        raise InputError(f"{what} has size {img.size}: it must have at least one pixel")
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in EIGHT_BIT_MODES:
        return img.convert("RGB")
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(img, dtype=np.int64) if mode == "I" else np.asarray(img.convert("I"), dtype=np.int64)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise InputError(
                f"{what} is a 32-bit integer image (mode I) with values {low}..{high}, outside the 16-bit range "
                "0..65535 this tool rescales; save it as an 8- or 16-bit PNG"
            )
        grey = np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InputError(f"{what} is a float image holding NaN or Inf values; fix the file")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{what} is a 32-bit float image (mode F) with values {low:g}..{high:g}; float images are read as "
                "intensities in [0, 1]: rescale it to [0, 1] or save it as an 8-bit image"
            )
        return Image.fromarray(np.rint(values * 255.0).astype(np.uint8)).convert("RGB")
    raise InputError(
        f"{what} has Pillow mode {mode!r}, which this tool does not convert; save it as an 8-bit RGB or greyscale image"
    )


def check_size(size) -> int:
    """The network input side S: a positive multiple of 32, at most 4096 (remamber.validate.numbers.MAX_SIZE)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % SIZE_MULTIPLE:
        raise InputError(
            f"image size {size!r} is not a positive multiple of {SIZE_MULTIPLE}: the backbone downsamples by "
            f"{SIZE_MULTIPLE}; use e.g. 480 (ReMamber's training size) or 1024"
        )
    from .validate.numbers import MAX_SIZE

    if size > MAX_SIZE:
        raise InputError(f"image size {size} is above the supported maximum {MAX_SIZE}; use 480 or 1024")
    return int(size)


def to_pil_rgb(image) -> Image.Image:
    """A PIL image (any mode) or an HxWx3 uint8 array as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"image array has shape {image.shape} and dtype {image.dtype}: pass an HxWx3 uint8 RGB array "
                "(or a PIL image)"
            )
        return Image.fromarray(np.ascontiguousarray(image))  # uint8 HxWx3 -> mode RGB
    raise InputError(f"image is a {type(image).__name__}: pass a PIL image or an HxWx3 uint8 numpy array")


def preprocess(image, size: int) -> torch.Tensor:
    """float32 tensor (1, 3, S, S): the network input for one image."""
    side = check_size(size)
    rgb = to_pil_rgb(image)
    if rgb.width < 1 or rgb.height < 1:
        raise InputError(f"image has size {rgb.size}: it must have at least one pixel")
    resized = rgb.resize((side, side), Image.BILINEAR)
    # ToTensor then Normalize, in torchvision's order and dtype (float32 /255, then sub mean, div std).
    x = torch.from_numpy(np.array(resized, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return x.sub_(mean).div_(std).unsqueeze(0)


def postprocess(logits, original_size: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) at the original image size from logits (1, 1, S, S).

    ``original_size`` is (W, H), PIL's ``Image.size`` order.
    """
    if isinstance(logits, np.ndarray):
        logits = torch.from_numpy(logits)
    if not isinstance(logits, torch.Tensor):
        raise InputError(f"logits is a {type(logits).__name__}: pass the model output tensor (1, 1, S, S)")
    if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != 1:
        raise InputError(f"logits have shape {tuple(logits.shape)}: expected (1, 1, S, S), one image's model output")
    try:
        width, height = (int(v) for v in original_size)
    except (TypeError, ValueError):
        raise InputError(f"original_size {original_size!r} is not (width, height)") from None
    if width < 1 or height < 1:
        raise InputError(f"original_size {original_size!r} must be positive (width, height)")
    logits = logits.detach().to("cpu", torch.float32)
    if torch.isnan(logits).any():
        raise InputError(
            "the logits contain NaN: the model produced invalid numbers; check the checkpoint and the precision "
            "(run in float32)"
        )
    resized = F.interpolate(logits, size=(height, width))  # default mode "nearest", as official evaluate
    return (torch.sigmoid(resized) > 0.5)[0, 0].numpy()


def overlay(image, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.5) -> Image.Image:
    """The image with the mask's pixels blended toward ``color`` by ``alpha`` (RGB PIL image)."""
    rgb = np.asarray(to_pil_rgb(image), dtype=np.float32)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise InputError(f"mask has dtype {mask.dtype}: pass the boolean mask from postprocess")
    if mask.shape != rgb.shape[:2]:
        raise InputError(
            f"mask shape {mask.shape} does not match the image (H, W) = {rgb.shape[:2]}: "
            "postprocess the logits with original_size=image.size"
        )
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha {alpha} is outside [0, 1]")
    tint = np.asarray(color, dtype=np.float32).reshape(1, 1, 3)
    blended = rgb * (1.0 - alpha) + tint * alpha
    out = np.where(mask[:, :, None], blended, rgb)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as an 8-bit greyscale image: 255 foreground, 0 background."""
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.ndim != 2:
        raise InputError(f"mask has shape {mask.shape} and dtype {mask.dtype}: expected a 2-D boolean mask")
    return Image.fromarray(mask.astype(np.uint8) * 255)  # uint8 HxW -> mode L


def save_png_atomic(img: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``img`` as PNG to a temporary file next to ``path``, then rename it over ``path``.

    A reader never sees a half-written file, and a failed write leaves neither the target nor the
    temporary file behind.
    """
    if not isinstance(img, Image.Image):
        raise InputError(f"save_png_atomic got a {type(img).__name__}: pass a PIL image")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        img.save(fh, format="PNG")
    return Path(path)
