"""The per-sentence results file of ``remamber-deploy eval`` (``<out>/samples.jsonl``).

One JSON object per line, appended and flushed as each inference finishes, so an interrupted run
loses at most the line being written and ``--resume`` continues where it stopped:

    {"kind": "header", "version": 1, "fingerprint": {...what makes results comparable...}}
    {"kind": "row", "row": "ort/fp16", "status": "measured", "reason": null, "device": "cpu", "details": {...}}
    {"kind": "sample", "row": "ort/fp16", "key": "<ref_id>:<sent_id>", "inter": 812, "union": 1033,
     "nan": false, "ms": 41.2, "mask": {"size": [H, W], "counts": "<COCO compressed RLE>"}}

The fingerprint holds the data, split, model and resolution: a resume with a different one is
refused (its numbers would mix two experiments). The runtimes and ``--limit`` may change between
resumes: rows are keyed by runtime/precision and samples by ref and sentence id. The predicted
masks are stored as RLE, so the report (deltas, disagreements, overlays) is rebuilt from this file
alone without keeping logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..errors import InputError

VERSION = 1


def encode_mask(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def mask_agreement(a: dict, b: dict) -> tuple[int, int]:
    """(intersection, union) of two RLE masks of one image, without decoding them."""
    from pycocotools import mask as mask_utils

    ra = {"size": a["size"], "counts": a["counts"].encode("ascii")}
    rb = {"size": b["size"], "counts": b["counts"].encode("ascii")}
    inter = int(mask_utils.area(mask_utils.merge([ra, rb], intersect=True)))
    union = int(mask_utils.area(mask_utils.merge([ra, rb], intersect=False)))
    return inter, union


class ResultsFile:
    """Append-only per-sample results with resume; see the module docstring for the format."""

    def __init__(self, path: Path, fingerprint: dict, resume: bool):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON
        self.samples: dict[tuple[str, str], dict] = {}
        self.rows: dict[str, dict] = {}
        self.resumed = 0
        lines = [json.dumps({"kind": "header", "version": VERSION, "fingerprint": self.fingerprint})]
        if resume and self.path.is_file():
            for record in self._read():
                lines.append(json.dumps(record))
                self._index(record)
            self.resumed = len(self.samples)
        # (Re)write the header and the intact records in one atomic step: a torn last line from an
        # interrupted run is dropped here instead of corrupting what is appended next.
        write_text_atomic(self.path, "\n".join(lines) + "\n")
        self._fh = open(self.path, "a", encoding="utf-8")

    def _read(self) -> list[dict]:
        text = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(text[0]) if text else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("kind") != "header":
            raise InputError(f"{self.path} is not an eval results file (no header line); pass a fresh --out "
                             "or leave out --resume")
        if header.get("version") != VERSION:
            raise InputError(f"{self.path} was written by results format {header.get('version')}, this is {VERSION}; "
                             "start a fresh run (leave out --resume)")
        old = header.get("fingerprint", {})
        changed = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
        if changed:
            detail = "; ".join(f"{k}: was {old.get(k)!r}, now {self.fingerprint.get(k)!r}" for k in changed)
            raise InputError(f"cannot resume {self.path}: the run differs in {detail}. Resume with the same data, "
                             "model and resolution, or write to a new --out")
        records = []
        for number, line in enumerate(text[1:], start=2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(text):
                    break  # the line being written when the run stopped
                raise InputError(f"{self.path}:{number} is not JSON; the results file is damaged: start a fresh run") from None
            if isinstance(record, dict) and record.get("kind") in ("row", "sample"):
                records.append(record)
        return records

    def _index(self, record: dict) -> None:
        if record["kind"] == "sample":
            self.samples[(record["row"], record["key"])] = record
        else:
            self.rows[record["row"]] = record

    def _write(self, record: dict) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        self._index(record)

    def done(self, row: str, key: str) -> bool:
        return (row, key) in self.samples

    def add_sample(self, row: str, key: str, inter: int, union: int, nan: bool, ms: float | None, mask: np.ndarray):
        self._write({"kind": "sample", "row": row, "key": key, "inter": int(inter), "union": int(union),
                     "nan": bool(nan), "ms": ms, "mask": encode_mask(mask)})

    def set_row(self, row: str, **info) -> None:
        self._write({"kind": "row", "row": row, **info})

    def row_samples(self, row: str, keys: list[str]) -> dict[str, dict]:
        """The records of ``row`` for ``keys`` (those that exist), by key."""
        return {k: self.samples[(row, k)] for k in keys if (row, k) in self.samples}

    def close(self) -> None:
        self._fh.close()
