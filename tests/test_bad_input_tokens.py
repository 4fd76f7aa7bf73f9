"""Bad model inputs (token ids, attention mask, batch 0, non-finite pixels) are refused once,
before any runtime, by remamber.validate.tokens: the same message whichever runtime would run them.

Expected behaviour comes from the input contract (CLIP vocabulary 0..49407, 20 slots, 0/1 mask),
not from the code under test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from remamber.errors import InputError
from remamber.validate.tokens import check_feeds, check_model_inputs

BOS, EOS = 49406, 49407


def good(batch=1, size=32):
    ids = np.full((batch, 20), EOS, dtype=np.int64)
    ids[:, 0] = BOS
    ids[:, 1:3] = 320
    mask = np.zeros((batch, 20), dtype=np.int64)
    mask[:, :4] = 1
    return np.zeros((batch, 3, size, size), np.float32), ids, mask


def test_good_inputs_pass_numpy_and_torch():
    image, ids, mask = good(2)
    check_model_inputs(image, ids, mask)
    check_model_inputs(torch.from_numpy(image), torch.from_numpy(ids), torch.from_numpy(mask))
    check_feeds({"image": image, "input_ids": ids, "attention_mask": mask})


def _set(arr, index, value):
    arr = arr.copy()
    arr[index] = value
    return arr


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda i, d, m: (i, _set(d, (0, 1), -1), m), r"token id -1 at \[0, 1\].*0\.\.49407"),
        (lambda i, d, m: (i, _set(d, (1, 5), 49408), m), r"token id 49408 at \[1, 5\]"),
        (lambda i, d, m: (i, _set(d, (0, 2), 2**40), m), "outside CLIP's vocabulary"),
        (lambda i, d, m: (i[:0], d[:0], m[:0]), "batch 0"),
        (lambda i, d, m: (np.full_like(i, np.nan), d, m), r"NaN or Inf.*\[0, 1\]"),
        (lambda i, d, m: (_set(i, (1, 2, 3, 4), np.inf), d, m), r"NaN or Inf.*\[1\]"),
        (lambda i, d, m: (i, d, _set(m, (0, 7), 2)), "only 0 and 1"),
        (lambda i, d, m: (i, d, _set(m, 1, 0)), "row 1 is all zeros"),
        (lambda i, d, m: (i, d.astype(np.float32), m), "int64"),
        (lambda i, d, m: (i, d[:, :19], m), r"\(batch, 20\)"),
        (lambda i, d, m: (i, d[:1], m), "batch 1 but image has batch 2"),
        (lambda i, d, m: (i.astype(np.uint8), d, m), "float32"),
        (lambda i, d, m: (i[:, :2], d, m), r"\(batch, 3, S, S\)"),
    ],
    ids=["id-1", "id-vocab", "id-huge", "batch0", "all-nan", "inf", "mask-2", "mask-empty", "float-ids",
         "19-slots", "batch-mismatch", "uint8-image", "two-channels"],
)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_bad_inputs_refused_before_any_runtime(mutate, match, kind):
    image, ids, mask = mutate(*good(2))
    if kind == "torch":
        image, ids, mask = (torch.from_numpy(np.ascontiguousarray(a)) for a in (image, ids, mask))
    with pytest.raises(InputError, match=match):
        check_model_inputs(image, ids, mask)


def test_missing_feed_named():
    image, ids, _ = good()
    with pytest.raises(InputError, match="attention_mask"):
        check_feeds({"image": image, "input_ids": ids})


def test_forward_keeps_static_checks_without_value_checks():
    """The forward's own checks read shapes only: a value problem passes them (it is the entry
    points' job), a shape problem is still refused there."""
    from remamber.model.inputs import validate_inputs

    image = torch.full((1, 3, 32, 32), float("nan"))
    ids = torch.full((1, 20), -1, dtype=torch.int64)
    validate_inputs(image, ids, torch.ones(1, 20, dtype=torch.int64), 20)  # no value check, no sync
    with pytest.raises(InputError, match="batch 0"):
        validate_inputs(image[:0], ids[:0], torch.ones(0, 20, dtype=torch.int64), 20)
