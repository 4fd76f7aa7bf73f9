"""``remamber-deploy compare --runtime-logits``: judge logits another runtime wrote (the C++ runner,
trtexec --exportOutput converted to .npy, a Jetson app) against PyTorch on the same inputs.

The inputs are the ``remamber-deploy prepare-inputs`` folder the runtime read; PyTorch runs the model
the ONNX metadata names on exactly those arrays, and the .npy is judged with the precision's
tolerances of export/parity_check.py (the same verdict as ONNX Runtime gets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from remamber.errors import InputError


def load_logits(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--runtime-logits {path}: no such file; write it with remamber_trt_runner --output {path}")
    try:
        logits = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"--runtime-logits {path} is not a readable .npy file ({exc})") from None
    if logits.dtype.kind != "f":
        raise InputError(f"--runtime-logits {path} holds {logits.dtype}; logits are float32 (or float16)")
    return logits


def compare_runtime_logits(logits_path: Path, inputs_dir: Path | None, model, precision: str, resolution: int):
    """(report text, passed) for a runtime's logits against PyTorch on the prepare-inputs arrays."""
    import torch
    from tabulate import tabulate

    from remamber.parity import compare_logits
    from remamber.prepare_inputs import load_inputs

    from .onnx_export import INPUT_NAMES
    from .parity_check import TOLERANCES, judge_logits, torch_reference

    if inputs_dir is None:
        raise InputError("--runtime-logits needs --inputs DIR: the prepare-inputs folder the runtime read")
    arrays = load_inputs(inputs_dir)
    side = arrays["image"].shape[-1]
    if resolution and side != resolution:
        raise InputError(f"--inputs {inputs_dir}: image is {side} x {side} but the ONNX graph takes {resolution}; "
                         f"run prepare-inputs with --size {resolution}")
    logits = load_logits(logits_path)
    reference, seconds = torch_reference(model, tuple(torch.from_numpy(arrays[n]) for n in INPUT_NAMES))
    ref = reference["logits"]
    if logits.shape != ref.shape:
        raise InputError(f"--runtime-logits {logits_path} has shape {logits.shape}, PyTorch gives {ref.shape} "
                         "for these inputs: was it produced from this --inputs folder?")
    tol = TOLERANCES[precision]
    m = compare_logits(ref, logits, margin=tol.margin)
    failures = judge_logits(m, tol)
    table = tabulate([[str(logits_path), "x".join(map(str, ref.shape)), f"{m.max_abs_error:.3g}", f"{m.logit_scale:.3g}",
                       f"{m.max_abs_error / max(m.logit_scale, 1e-30):.2e}", f"{m.cosine_similarity:.6f}",
                       f"{m.mask_iou:.4f}", f"{m.mask_pixel_mismatch:.3%}", "pass" if not failures else "FAIL"]],
                     headers=["runtime logits", "shape", "max abs", "scale", "max abs/scale", "cosine", "mask IoU",
                              "mask mismatch", "verdict"], tablefmt="github")
    lines = [f"runtime logits vs PyTorch on {inputs_dir} ({precision} tolerances; PyTorch {seconds:.1f} s)", table,
             "PARITY PASS" if not failures else "PARITY FAIL:\n  - " + "\n  - ".join(failures)]
    return "\n\n".join(lines), not failures
