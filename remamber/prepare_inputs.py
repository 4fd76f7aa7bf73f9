"""``remamber-deploy prepare-inputs``: the network inputs of one image and sentence, as .npy files.

For runtimes without Python (the C++ runner apps/trt_runner, trtexec's --loadInputs after a
conversion, a Jetson app): the same preprocessing as ``predict`` (resize to S x S, CLIP
normalisation; CLIP tokenizer, 20 slots), written as one .npy per ONNX input, named after the
input: ``image.npy`` (1, 3, S, S) float32, ``input_ids.npy`` and ``attention_mask.npy`` (1, 20) int64,
plus ``inputs.json`` saying what they hold. Each file is written to a temporary name and renamed.

    remamber-deploy prepare-inputs --sample cat --size 480 --out inputs/
    remamber-deploy prepare-inputs --image photo.jpg --text "the man on the left" --size 480 --out inputs/
    remamber_trt_runner --engine model.engine --plugin libremamber_trt_plugin.so --inputs inputs/ --output logits.npy
    remamber-deploy compare model.onnx --runtime-logits logits.npy --inputs inputs/
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic, write_text_atomic
from .errors import InputError

# The ONNX input names of `remamber-deploy export` (export/onnx_export.py INPUT_NAMES) and the dtype
# each file holds; the C++ runner matches files to engine inputs by these names.
INPUT_FILES = {"image": np.float32, "input_ids": np.int64, "attention_mask": np.int64}
MANIFEST = "inputs.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .samples import DEFAULT_SAMPLE, list_samples

    samples = list_samples()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, metavar="PATH", help="image file (PNG, JPEG, ...)")
    source.add_argument("--sample", choices=list(samples), default=None,
                        help=f"a sample image bundled with scikit-image (default: {DEFAULT_SAMPLE})")
    parser.add_argument("--text", metavar="SENTENCE", help="referring expression (default: the sample's sentence)")
    parser.add_argument("--size", type=int, default=480, help="network input side S, a multiple of 32 (default 480)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="local CLIP tokenizer folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npy files")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def prepare(image, text: str, size: int, tokenizer_path=None) -> dict[str, np.ndarray]:
    """The three network inputs for one image and sentence (what ``predict`` feeds the model)."""
    from .imageio import preprocess
    from .tokenizer import tokenize
    from .validate.text import check_text
    from .validate.tokens import check_model_inputs

    check_text(text, "--text")
    input_ids, attention_mask = tokenize([text], tokenizer_path=tokenizer_path,
                                         on_truncate=lambda m: print(f"warning: --text: {m}", file=sys.stderr))
    pixels = preprocess(image, size)
    check_model_inputs(pixels, input_ids, attention_mask, source="prepare-inputs")
    arrays = {"image": pixels.numpy(), "input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    return {name: arrays[name].astype(dtype, copy=False) for name, dtype in INPUT_FILES.items()}


def load_inputs(folder: Path) -> dict[str, np.ndarray]:
    """Read a prepare-inputs folder back (for ``compare --inputs``), checking names and dtypes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--inputs {folder}: not a folder; write one with `remamber-deploy prepare-inputs --out {folder}`")
    out = {}
    for name, dtype in INPUT_FILES.items():
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise InputError(f"--inputs {folder}: {name}.npy is missing; write the folder with `remamber-deploy prepare-inputs`")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path} is not a readable .npy file ({exc}); write it again with prepare-inputs") from None
        if array.dtype != dtype:
            raise InputError(f"{path} holds {array.dtype}, expected {np.dtype(dtype)}")
        out[name] = array
    if out["image"].ndim != 4 or out["input_ids"].shape != out["attention_mask"].shape \
            or out["image"].shape[0] != out["input_ids"].shape[0]:
        raise InputError(f"--inputs {folder}: shapes do not fit together: "
                         + ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items()))
    # The same value checks every runtime's feeds get (token ids in the vocabulary, 0/1 mask, finite
    # pixels), so a hand-edited folder is refused here as it would be by predict or bench.
    from .validate.tokens import check_feeds

    check_feeds(out, source=f"--inputs {folder}")
    return out


def run(args: argparse.Namespace) -> int:
    from .imageio import check_size, load_image
    from .samples import DEFAULT_SAMPLE, sample_image
    from .validate.paths import check_output_dir, check_output_file

    size = check_size(args.size)
    check_output_dir(args.out, "--out", inputs=[args.image])
    for name in [*INPUT_FILES, MANIFEST]:
        suffix = "json" if name == MANIFEST else "npy"
        file = args.out / (name if name == MANIFEST else f"{name}.npy")
        check_output_file(file, suffix, f"--out {args.out}: {file.name}", inputs=[args.image], force=args.force)
    if args.image is not None:
        if args.text is None:
            raise InputError("--text is required with --image: give the referring expression, e.g. --text 'the cat'")
        image, text, source = load_image(args.image), args.text, str(args.image)
    else:
        sample = args.sample or DEFAULT_SAMPLE
        image, default_text = sample_image(sample)
        text, source = (args.text if args.text is not None else default_text), f"sample {sample}"
    arrays = prepare(image, text, size, args.tokenizer)
    for name, array in arrays.items():
        write_bytes_atomic(args.out / f"{name}.npy", npy_bytes(array))
    manifest = {"source": source, "text": text, "size": size,
                "inputs": {k: {"file": f"{k}.npy", "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()}}
    write_text_atomic(args.out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    for name, array in arrays.items():
        print(f"{args.out / (name + '.npy')}: {array.dtype} {tuple(array.shape)}")
    return 0
