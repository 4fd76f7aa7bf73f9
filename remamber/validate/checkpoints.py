"""Checkpoint values: what ``load_state_dict`` accepts but no trained model holds.

``load_state_dict`` casts silently: weights saved as int64 (a cast gone wrong) load as whole numbers,
and a bias of +inf or a NaN weight loads as is; the model then runs and writes a mask. Here every
tensor about to be loaded is checked against the model's own tensor: a floating-point parameter or
buffer must come from a floating-point tensor, and its values must be finite. The message names the
tensor, so a user can tell a damaged file from a wrong one.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import CheckpointError

MAX_LISTED = 5


def check_state_values(expected: Mapping, given: Mapping, path) -> None:
    """``expected``: the model's state_dict; ``given``: the file's tensors that will be loaded into it."""
    import torch

    wrong_dtype, non_finite = [], []
    for key, target in expected.items():
        tensor = given.get(key)
        if tensor is None or not isinstance(tensor, torch.Tensor):
            continue
        if target.is_floating_point():
            if not tensor.is_floating_point():
                wrong_dtype.append(f"{key} ({str(tensor.dtype).replace('torch.', '')})")
                continue
            if tensor.numel() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                kinds = [name for name, hit in (("NaN", torch.isnan(tensor).any()), ("+inf", (tensor == float("inf")).any()),
                                                ("-inf", (tensor == float("-inf")).any())) if bool(hit)]
                non_finite.append(f"{key} ({bad} of {tensor.numel()} values are {'/'.join(kinds)})")
        elif tensor.is_floating_point() or tensor.is_complex():
            wrong_dtype.append(f"{key} ({str(tensor.dtype).replace('torch.', '')}, the model keeps it as {target.dtype})")

    def listing(items):
        shown = ", ".join(items[:MAX_LISTED])
        return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")

    if wrong_dtype:
        raise CheckpointError(
            f"{path}: {len(wrong_dtype)} tensor(s) have the wrong kind of dtype: {listing(wrong_dtype)}; trained "
            "weights are floating point, so this file was cast or damaged after training: use the original checkpoint"
        )
    if non_finite:
        raise CheckpointError(
            f"{path}: {len(non_finite)} tensor(s) hold NaN or infinite values: {listing(non_finite)}; the model would "
            "give meaningless masks: use an intact checkpoint (a diverged training run saves such values)"
        )


def check_checkpoint_file(path, what: str = "checkpoint") -> None:
    """Before building a model: the file exists and looks like a PyTorch checkpoint (a zip archive, the
    format of torch.save since 1.6, or a legacy pickle), so a wrong file fails in a second, not after
    minutes of model building. Its content is checked when it is loaded."""
    from pathlib import Path

    from .paths import KINDS, check_input_file, sniff

    path = check_input_file(Path(path), what, "pass the path of ReMamber_Conv.pth / ReMamber_Mamba.pth")
    kind = sniff(path)
    if kind not in ("zip", "pickle"):
        raise CheckpointError(
            f"{what} {path} holds {KINDS[kind]}, not a PyTorch checkpoint (torch.save writes a zip archive); "
            "pass the .pth file of ReMamber or VMamba"
        )
