"""Sample images with a referring sentence, for demos and smoke tests without any dataset.

No PyPI package ships referring-segmentation data (ANCHORS.md section 6), and RefCOCO cannot be
downloaded on the project's machines. scikit-image bundles a few classic images inside its wheel
(``skimage/data/*.png|jpg``); only those are used here, so nothing is fetched over the network.
"""

from __future__ import annotations

from PIL import Image

from .errors import InputError, RemamberError

# name -> (skimage.data loader, default referring sentence). All are bundled files of scikit-image
# (checked offline with scikit-image 0.26); newer skimage.data images would be downloaded, so they are not listed.
_SAMPLES: dict[str, tuple[str, str]] = {
    "cat": ("chelsea", "the cat"),
    "astronaut": ("astronaut", "the woman in the space suit"),
    "coffee": ("coffee", "the cup of coffee"),
    "rocket": ("rocket", "the rocket"),
    "camera": ("camera", "the man with the camera"),  # greyscale, returned as RGB
}
DEFAULT_SAMPLE = "cat"


def list_samples() -> dict[str, str]:
    """Sample names mapped to their default referring sentence, in a stable order."""
    return {name: sentence for name, (_, sentence) in _SAMPLES.items()}


def sample_image(name: str | None = None) -> tuple[Image.Image, str]:
    """(RGB PIL image, default referring sentence) for a bundled sample; ``None`` gives the default ("cat")."""
    key = DEFAULT_SAMPLE if name is None else name
    if key not in _SAMPLES:
        raise InputError(f"unknown sample {name!r}: choose one of {', '.join(_SAMPLES)}")
    loader_name, sentence = _SAMPLES[key]
    try:
        import skimage.data
    except ImportError as exc:
        raise RemamberError(
            f"sample images come from scikit-image, which cannot be imported ({exc}): pip install scikit-image"
        ) from exc
    try:
        pixels = getattr(skimage.data, loader_name)()
    except Exception as exc:  # a missing data file surfaces as various errors (pooch, OSError)
        raise RemamberError(
            f"scikit-image could not load its bundled image {loader_name!r} ({exc}): reinstall scikit-image, "
            "or pass your own image with --image"
        ) from exc
    return Image.fromarray(pixels).convert("RGB"), sentence
