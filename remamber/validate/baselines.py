"""Latency baselines (``bench --baseline FILE``): values a regression gate can compare with.

JSON lets ``NaN`` and ``Infinity`` through (Python's json module reads them), and the JSON Schema
``minimum`` keyword does not catch them (every comparison with NaN is false), so a NaN median or
MAD in a baseline used to switch the gate off: "ok", exit 0. Here the file is parsed with
non-finite constants refused, then every row's numbers are checked to be finite and in range.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import InputError

# field -> (strictly positive?, description)
ROW_NUMBERS = {
    "median_ms": (True, "median latency"),
    "mad_ms": (False, "median absolute deviation"),
    "iqr_ms": (False, "interquartile range"),
}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_strict(raw: bytes, what: str, fix: str):
    """JSON with NaN / Infinity / -Infinity refused (they are not JSON, only a Python extension)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start}); {fix}") from None
    except ValueError as exc:  # JSONDecodeError and the refused constants
        raise InputError(f"{what} is not valid JSON ({exc}); {fix}") from None


def check_baseline_values(data: dict, what: str, fix: str) -> None:
    """Every row's latency numbers finite and in range, and no two rows for the same key."""
    seen = set()
    for i, row in enumerate(data.get("rows", [])):
        label = f"{what} row {i} ({row.get('runtime')} @{row.get('resolution')} {row.get('precision')} b{row.get('batch')})"
        for name, (positive, description) in ROW_NUMBERS.items():
            value = row.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{label}: {name} ({description}) is {value!r}, not a finite number; {fix}")
            if value < 0 or (positive and value == 0):
                raise InputError(f"{label}: {name} ({description}) must be {'positive' if positive else '>= 0'}, "
                                 f"got {value}; {fix}")
        count = row.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise InputError(f"{label}: count must be a positive integer, got {count!r}; {fix}")
        key = (row.get("runtime"), row.get("resolution"), row.get("precision"), row.get("batch"), row.get("metric"))
        if key in seen:
            raise InputError(f"{label} appears twice; keep one row per runtime, resolution, precision and batch; {fix}")
        seen.add(key)


def read_baseline_file(path, fix: str) -> dict:
    """Read ``path`` as strict JSON (schema validation is the caller's)."""
    from .paths import check_input_file

    path = check_input_file(Path(path), "baseline", fix)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"baseline {path} cannot be read ({exc.strerror or exc}); {fix}") from None
    return parse_json_strict(raw, f"baseline {path}", fix)
