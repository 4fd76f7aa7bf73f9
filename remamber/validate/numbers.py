"""Numeric, size, batch and device options: argparse ``type=`` functions with the project's messages.

argparse shows an ``ArgumentTypeError``'s own text ("argument --batch: ...") but replaces a
ValueError's (our InputError is one) with a bare "invalid value", so every function here raises
ArgumentTypeError when used as a ``type=`` and the same check is available to Python callers as
``check_*`` functions raising InputError. NaN and infinity are refused everywhere: a NaN threshold
makes every comparison false, which switches a gate off instead of failing it.
"""

from __future__ import annotations

import argparse
import math
import threading

from ..errors import InputError

SIZE_MULTIPLE = 32
MAX_SIZE = 4096          # stage-0 scans are (S/4)^2 long: 1,048,576 steps at 4096; beyond that is a typo
MAX_BATCH = 1024
MAX_COUNT = 10_000_000   # iterations, repeats: anything larger is a typo, not a benchmark


_LAST = threading.local()  # the InputError behind the last ArgumentTypeError raised here


def take_type_error(argparse_message: str) -> InputError | None:
    """The InputError an argparse error message came from (once), so the CLI can report it like any
    other bad input (one line, exit 2) instead of argparse's usage block."""
    exc, text = getattr(_LAST, "error", (None, None))
    _LAST.error = (None, None)
    return exc if exc is not None and argparse_message.endswith(text) else None


def _arg_type(check, name: str, option: str = ""):
    """Wrap ``check(text) -> value`` (raising InputError) as an argparse type with its own message."""
    def parse(text):
        try:
            return check(text)
        except InputError as exc:
            # argparse already prefixes "argument --x:", so the option name is not repeated.
            message = str(exc)
            message = message[len(option) + 1:] if option and message.startswith(option + " ") else message
            _LAST.error = (exc, message)
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _int(text, what: str) -> int:
    if isinstance(text, bool):
        raise InputError(f"{what} must be an integer, got {text!r}")
    if isinstance(text, int):
        return text
    try:
        return int(str(text).strip())
    except ValueError:
        raise InputError(f"{what} must be an integer, got {text!r}") from None


def check_int(text, what: str = "value", minimum: int | None = None, maximum: int | None = None) -> int:
    value = _int(text, what)
    if minimum is not None and value < minimum:
        raise InputError(f"{what} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{what} must be at most {maximum}, got {value}")
    return value


def check_float(text, what: str = "value", minimum: float | None = None, maximum: float | None = None,
                strict_minimum: bool = False) -> float:
    try:
        value = float(str(text).strip()) if not isinstance(text, (int, float)) or isinstance(text, bool) else float(text)
    except ValueError:
        raise InputError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {text!r}: NaN or infinity would switch the check off")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise InputError(f"{what} must be {'above' if strict_minimum else 'at least'} {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InputError(f"{what} must be at most {maximum:g}, got {value:g}")
    return value


def check_size(text, what: str = "size") -> int:
    """An image side S: a positive multiple of 32 up to MAX_SIZE."""
    value = _int(text, what)
    if value <= 0 or value % SIZE_MULTIPLE:
        lower = max(SIZE_MULTIPLE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)
        raise InputError(
            f"{what} {value} is not a positive multiple of {SIZE_MULTIPLE} (the backbone downsamples by 32); "
            f"use e.g. {lower} or {lower + SIZE_MULTIPLE} (480 is ReMamber's training size)"
        )
    if value > MAX_SIZE:
        raise InputError(f"{what} {value} is above the supported maximum {MAX_SIZE}; use 480 or 1024")
    return value


def check_batch_range(text, what: str = "--batch") -> tuple[int, int, int]:
    """"N" -> (N, N, N); "MIN,OPT,MAX" with 1 <= MIN <= OPT <= MAX <= MAX_BATCH."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) not in (1, 3) or not all(parts):
        raise InputError(f"{what} {text!r} must be N or MIN,OPT,MAX (e.g. 1 or 1,4,8)")
    values = [check_int(p, what, minimum=1, maximum=MAX_BATCH) for p in parts]
    if len(values) == 1:
        values *= 3
    lo, opt, hi = values
    if not lo <= opt <= hi:
        raise InputError(f"{what} {text!r} must satisfy MIN <= OPT <= MAX, e.g. {min(values)},{sorted(values)[1]},{max(values)}")
    return lo, opt, hi


def check_device(text, what: str = "--device") -> str:
    """"cpu", "cuda" or "cuda:N", and the GPU must be there."""
    device = str(text).strip().lower()
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise InputError(f"{what} {text!r} is not a device; use cpu, cuda or cuda:N")
    if device == "cpu":
        return device
    import torch

    if not torch.cuda.is_available():
        raise InputError(f"{what} {text}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise InputError(f"{what} {text}: only {torch.cuda.device_count()} CUDA device(s) are visible; use cuda:0")
    return device


# ---- argparse types ------------------------------------------------------------------------------------

def int_type(what: str, minimum: int | None = 1, maximum: int | None = MAX_COUNT):
    """``type=int_type("--repeats")``: an integer in [minimum, maximum]."""
    return _arg_type(lambda t: check_int(t, what, minimum, maximum), "integer", what)


def float_type(what: str, minimum: float | None = None, maximum: float | None = None, strict_minimum: bool = False):
    """``type=float_type("--max-regression", minimum=0)``: a finite number in range."""
    return _arg_type(lambda t: check_float(t, what, minimum, maximum, strict_minimum), "number", what)


def size_type(what: str = "--size"):
    return _arg_type(lambda t: check_size(t, what), "size", what)


def batch_range_type(what: str = "--batch"):
    return _arg_type(lambda t: check_batch_range(t, what), "batch range", what)


def device_type(what: str = "--device"):
    return _arg_type(lambda t: check_device(t, what), "device", what)


def choice_type(what: str, choices):
    """Like ``choices=`` but lists the valid names in the one-line message."""
    def check(text):
        if text not in choices:
            raise InputError(f"{what} {text!r} is not known; use one of {', '.join(choices)}")
        return text

    return _arg_type(check, "choice", what)
