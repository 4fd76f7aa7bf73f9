"""Checkpoint I/O: official ReMamber files, VMamba ImageNet backbone files, and our own saves.

Formats (REMAMBER_SPEC 6):
- ReMamber (``main.py``): ``{'model': state_dict, 'epoch', ...}``; best checkpoints also carry
  ``optimizer``, ``lr_scheduler``, ``model_ema``, ``scaler`` and ``args`` (an argparse Namespace).
  Loaded strictly, as the official demo does.
- VMamba ImageNet (``vssm_base_0229_ckpt_epoch_237.pth``): ``st['model']`` with plain VMamba names
  (``patch_embed.*``, ``layers.*``, ``classifier.*``) and a pickled yacs ``config``. The backbone
  part loads into ``model.backbone``; ``classifier.*`` is ignored; the fusion modules, the text
  encoder and the decoder stay as they are and are reported as missing.

Reading is safe by default: ``torch.load(weights_only=True)`` (argparse.Namespace allowed). Files
that pickle other objects (yacs CfgNode, ...) are read with a restricted unpickler that rebuilds
tensors and plain containers and turns every other class into an inert placeholder, so no code
from the file runs and yacs need not be installed.
"""

from __future__ import annotations

import argparse
import copyreg
import functools
import os
import pickle
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import CheckpointError
from .validate.checkpoints import check_state_values

KIND_REMAMBER_CONV = "remamber-conv"
KIND_REMAMBER_MAMBA = "remamber-mamba"
KIND_VMAMBA = "vmamba-backbone"
KIND_UNKNOWN = "unknown"

KIND_DESCRIPTIONS = {
    KIND_REMAMBER_CONV: "a ReMamber conv checkpoint (ReMamber_Conv, ConvDecoder)",
    KIND_REMAMBER_MAMBA: "a ReMamber mamba checkpoint (ReMamber_Mamba, MambaDecoder)",
    KIND_VMAMBA: "a VMamba ImageNet backbone checkpoint",
    KIND_UNKNOWN: "an unknown checkpoint (neither ReMamber nor VMamba key names)",
}
KINDS = ("auto", "remamber", "vmamba")

# Buffers some transformers versions save and others do not (spec 6.1).
DROPPED_KEYS = ("text_encoder.text_model.embeddings.position_ids",)
# Modules ReMamber adds to the VMamba backbone: absent from VMamba ImageNet files.
FUSION_PREFIXES = ("multimodal_blocks.", "text_guidencee.", "local_text_fusion.")
MAX_LISTED = 10


@dataclass
class CheckpointReport:
    """What ``load_checkpoint`` did."""

    path: str
    kind: str
    loaded: list[str] = field(default_factory=list)  # model keys set from the file
    missing: list[str] = field(default_factory=list)  # model keys the file does not provide (left as they were)
    ignored: list[str] = field(default_factory=list)  # file keys deliberately not loaded
    extras: list[str] = field(default_factory=list)  # other top-level entries of the file (epoch, args, ...)
    placeholders: list[str] = field(default_factory=list)  # classes replaced by inert placeholders when reading

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {KIND_DESCRIPTIONS.get(self.kind, self.kind)}",
            f"  loaded {len(self.loaded)} tensors; {len(self.missing)} model keys not in the file; "
            f"{len(self.ignored)} file keys ignored",
        ]
        if self.missing:
            lines.append("  missing (kept as initialised): " + _summarise_prefixes(self.missing))
        if self.ignored:
            lines.append("  ignored: " + _summarise_prefixes(self.ignored))
        if self.extras:
            lines.append("  other entries: " + ", ".join(self.extras))
        if self.placeholders:
            lines.append("  objects read as placeholders: " + ", ".join(self.placeholders))
        return "\n".join(lines)


def _summarise_prefixes(keys: list[str]) -> str:
    counts: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        prefix = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    return ", ".join(f"{p}.* ({n})" for p, n in counts.items())


# ---- reading ---------------------------------------------------------------------------------------

class _Placeholder(dict):
    """Stands in for a class the checkpoint pickled (e.g. yacs CfgNode). Holds its data inertly.

    A dict subclass, so pickled dict subclasses (CfgNode) keep their items.
    """

    _origin = "?"

    def __init__(self, *args, **kwargs):  # called by REDUCE with the pickled arguments
        super().__init__()
        self.__dict__["_args"] = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<placeholder for {self._origin}: {dict.__repr__(self)}>"


_SAFE_BUILTINS = {
    "set", "frozenset", "dict", "list", "tuple", "slice", "complex", "float", "int", "bool", "str",
    "bytes", "bytearray", "range", "object",
}


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[str, object]:
    """What torch's weights-only unpickler accepts (tensor rebuilders, dtypes, OrderedDict, ...)."""
    allowed: dict[str, object] = {}
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except Exception:  # private API moved: keep the essentials
        import collections

        from torch import _utils

        allowed.update({
            "collections.OrderedDict": collections.OrderedDict,
            "torch._utils._rebuild_tensor_v2": _utils._rebuild_tensor_v2,
            "torch._utils._rebuild_parameter": _utils._rebuild_parameter,
        })
    allowed["argparse.Namespace"] = argparse.Namespace
    allowed["copyreg._reconstructor"] = _reconstructor
    allowed["copyreg.__newobj__"] = copyreg.__newobj__
    return allowed


def _reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, _Placeholder):
        obj = cls.__new__(cls)
        if state is not None:
            obj.__setstate__(state)
        return obj
    return copyreg._reconstructor(cls, base, state)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only what torch's weights-only loader allows, plus argparse.Namespace and plain
    builtins; every other global (yacs CfgNode, numpy objects, any callable) becomes an inert
    placeholder class, so nothing from the file can run code."""

    seen: set[str] = set()

    def find_class(self, module: str, name: str):
        qualified = f"{module}.{name}"
        allowed = _allowed_globals()
        if qualified in allowed:
            return allowed[qualified]
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        _RestrictedUnpickler.seen.add(qualified)
        return type(name, (_Placeholder,), {"_origin": qualified, "__module__": "remamber.checkpoint.placeholder"})


_restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(), __name__="remamber_restricted_pickle"
)


def read_checkpoint(path: str | os.PathLike) -> tuple[object, list[str]]:
    """torch.load a checkpoint safely. Returns (object, classes read as placeholders)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file not found: {path}; pass the path of a ReMamber .pth file "
            "(ReMamber_Conv.pth / ReMamber_Mamba.pth) or a VMamba ImageNet checkpoint"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError:
        pass  # pickles a class outside the weights-only allow-list (yacs CfgNode, ...)
    except Exception as exc:
        raise CheckpointError(_unreadable(path, exc)) from exc
    _RestrictedUnpickler.seen = set()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except Exception as exc:
        raise CheckpointError(_unreadable(path, exc)) from exc
    return obj, sorted(_RestrictedUnpickler.seen)


def _unreadable(path, exc: Exception) -> str:
    detail = " ".join(str(exc).split())[:300]  # one line
    return (f"could not read {path} as a PyTorch checkpoint ({type(exc).__name__}: {detail}); the file is damaged "
            "or not a checkpoint: download or copy it again")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def extract_state_dict(obj, path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state_dict inside a checkpoint: ``obj['model']`` (official format) or a bare state_dict."""
    if isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        extras = [str(k) for k in obj.keys() if k != "model"]
        state = dict(obj["model"])
    elif _is_state_dict(obj):
        extras, state = [], dict(obj)
    else:
        found = sorted(map(str, obj.keys()))[:MAX_LISTED] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} holds no model weights: expected a dict with a 'model' state_dict (the official "
            f"ReMamber / VMamba format) or a bare state_dict, found {found}"
        )
    # A DistributedDataParallel wrapper prefixes every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, extras


def guess_kind(keys) -> str:
    keys = list(keys)
    if any(k.startswith(("decoder.multimodal_blocks.", "decoder.hire_fusion.", "decoder.proj_out.")) for k in keys):
        return KIND_REMAMBER_MAMBA
    if any(k.startswith(("decoder.mixer", "decoder.neck.")) for k in keys):
        return KIND_REMAMBER_CONV
    if any(k.startswith("classifier.head") for k in keys) or (
        any(k.startswith("patch_embed.") for k in keys) and any(k.startswith("layers.") for k in keys)
    ):
        return KIND_VMAMBA
    return KIND_UNKNOWN


# ---- loading ---------------------------------------------------------------------------------------

def _model_kind(model) -> str:
    return KIND_REMAMBER_MAMBA if getattr(model, "variant", None) == "mamba" else KIND_REMAMBER_CONV


def _compare(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]):
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        (k, tuple(expected[k].shape), tuple(given[k].shape))
        for k in expected
        if k in given and tuple(expected[k].shape) != tuple(given[k].shape)
    ]
    return missing, unexpected, mismatched


def _mismatch_error(path, kind_found, model, missing, unexpected, mismatched, hint: str) -> CheckpointError:
    def listing(title, items, fmt=str):
        if not items:
            return []
        shown = ", ".join(fmt(i) for i in items[:MAX_LISTED])
        if len(items) <= MAX_LISTED:
            return [f"  {title} ({len(items)}): {shown}"]
        keys = [i[0] if isinstance(i, tuple) else i for i in items]
        return [
            f"  {title} ({len(items)}): {shown} ... and {len(items) - MAX_LISTED} more",
            f"    by prefix: {_summarise_prefixes(keys)}",
        ]

    lines = [
        f"{path} does not match the model ({getattr(model, 'variant', '?')} variant, "
        f"{getattr(model, 'preset', '?')} preset): it looks like {KIND_DESCRIPTIONS[kind_found]}."
    ]
    lines += listing("missing from the file", missing)
    lines += listing("unexpected in the file", unexpected)
    lines += listing("shape mismatch", mismatched, lambda m: f"{m[0]} expected {m[1]} found {m[2]}")
    lines.append(f"  fix: {hint}")
    return CheckpointError("\n".join(lines))


def _fix_hint(model, kind_found: str, state=None, missing=(), unexpected=(), mismatched=()) -> str:
    """The fix for a file that does not match, from what actually differs (not from the preset alone)."""
    variant = getattr(model, "variant", "conv")
    preset = getattr(model, "preset", "base")
    if kind_found in (KIND_REMAMBER_CONV, KIND_REMAMBER_MAMBA) and kind_found != _model_kind(model):
        variant = "mamba" if kind_found == KIND_REMAMBER_MAMBA else "conv"
        return f"build the model with variant={variant!r} (remamber.build_model({variant!r}, {preset!r}))"
    if mismatched and state is not None:
        other = _matching_preset(state, variant, preset)
        if other is not None:
            return (f"the file's tensor shapes are those of the {other!r} preset: build the model with that preset "
                    f"(remamber.build_model({variant!r}, {other!r}), or --preset {other})")
    if missing and not unexpected and not mismatched:
        return (f"the file lacks {len(missing)} of the model's tensors, so it is incomplete (truncated, or saved from "
                "a modified model): save it again from the complete model, or use the original checkpoint")
    if unexpected and not missing and not mismatched:
        return (f"the file has {len(unexpected)} tensors this model does not: it was saved from a different model "
                "or code version; use a checkpoint of this ReMamber version")
    if preset != "base" and mismatched:
        return ("official checkpoints are the 'base' preset: remamber.build_model(variant, 'base'), or leave out "
                "--preset so the commands pick the checkpoint's preset")
    return "use an official ReMamber checkpoint (ReMamber_Conv.pth / ReMamber_Mamba.pth) or a VMamba-B v2 ImageNet file"


def guess_model(state: Mapping[str, torch.Tensor]) -> tuple[str | None, str | None]:
    """(variant, preset) a state_dict was saved from, from its key names and tensor shapes; None where unknown.

    Lets ``--checkpoint`` pick the model to build: an official file is the base preset, a demo or
    user-trained tiny file the tiny preset. A VMamba ImageNet file is the base backbone (variant unknown).
    """
    from .model import VARIANTS

    found = guess_kind(state)
    if found == KIND_VMAMBA:
        return None, "base"
    variant = {KIND_REMAMBER_CONV: "conv", KIND_REMAMBER_MAMBA: "mamba"}.get(found)
    for candidate in ([variant] if variant else list(VARIANTS)):
        preset = _matching_preset(state, candidate, "")
        if preset is not None:
            return candidate, preset
    return variant, None


def inspect_checkpoint(path: str | os.PathLike) -> tuple[str | None, str | None, tuple[object, list[str]]]:
    """Read ``path`` once: (variant, preset) it holds (None where unknown) and the read contents,
    to pass on as ``load_checkpoint(..., contents=...)`` so a large file is not read twice."""
    contents = read_checkpoint(path)
    state, _ = extract_state_dict(contents[0], path)
    variant, preset = guess_model(state)
    return variant, preset, contents


def _matching_preset(state, variant: str, current: str) -> str | None:
    """The other preset whose state_dict shapes the file matches exactly (built on the meta device:
    shapes only, no memory, no initialisation)."""
    from .model import PRESETS, ReMamber, get_preset

    wanted = {k: tuple(v.shape) for k, v in state.items() if k not in DROPPED_KEYS}
    for name in PRESETS:
        if name == current:
            continue
        try:
            with torch.device("meta"):
                shapes = {k: tuple(v.shape) for k, v in ReMamber(get_preset(name), variant).state_dict().items()}
        except Exception:  # a preset that cannot be built on meta: no guess
            continue
        if shapes == wanted:
            return name
    return None


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike, kind: str = "auto",
                    contents: tuple[object, list[str]] | None = None) -> CheckpointReport:
    """Load a checkpoint file into ``model`` (a ``remamber.model.ReMamber``). Returns a CheckpointReport.

    kind: "auto" (decide from the key names), "remamber" (official ReMamber file, strict) or
    "vmamba" (VMamba ImageNet backbone file, backbone only). Raises CheckpointError naming the
    offending keys and the kind of file it looks like when the file does not fit. ``contents``:
    what ``read_checkpoint(path)`` (or ``inspect_checkpoint``) returned, to skip reading again.
    Tensors stored in another floating dtype (the demo checkpoint's float16) are cast to the model's.
    """
    if kind not in KINDS:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    obj, placeholders = contents if contents is not None else read_checkpoint(path)
    state, extras = extract_state_dict(obj, path)
    found = guess_kind(state)
    if kind == "auto":
        kind = "vmamba" if found == KIND_VMAMBA else "remamber"
    if kind == "vmamba":
        return _load_vmamba(model, path, state, found, extras, placeholders)
    return _load_remamber(model, path, state, found, extras, placeholders)


def _load_remamber(model, path, state, found, extras, placeholders) -> CheckpointReport:
    ignored = [k for k in DROPPED_KEYS if k in state]
    state = {k: v for k, v in state.items() if k not in DROPPED_KEYS}
    expected = model.state_dict()
    missing, unexpected, mismatched = _compare(expected, state)
    if missing or unexpected or mismatched:
        raise _mismatch_error(path, found, model, missing, unexpected, mismatched,
                              _fix_hint(model, found, state, missing, unexpected, mismatched))
    check_state_values(expected, state, path)  # non-floating weights, NaN / inf: refused, tensor named
    model.load_state_dict(state, strict=True)
    return CheckpointReport(
        path=str(path), kind=found, loaded=list(state), ignored=ignored, extras=extras, placeholders=placeholders
    )


def _load_vmamba(model, path, state, found, extras, placeholders) -> CheckpointReport:
    ignored = [k for k in state if k.startswith("classifier.")]
    given = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    backbone = model.backbone.state_dict()
    expected = {k: v for k, v in backbone.items() if not k.startswith(FUSION_PREFIXES)}
    missing, unexpected, mismatched = _compare(expected, given)
    if missing or unexpected or mismatched:
        hint = (
            "pass a VMamba-B v2 ImageNet checkpoint (vssm_base_0229_ckpt_epoch_237.pth) to a 'base' model"
            if found == KIND_VMAMBA
            else _fix_hint(model, found, state, missing, unexpected, mismatched) + " (or load it with kind='remamber')"
        )
        raise _mismatch_error(path, found, model, missing, unexpected, mismatched, hint)
    check_state_values(backbone, given, path)
    model.backbone.load_state_dict(given, strict=False)
    loaded = ["backbone." + k for k in given]
    loaded_set = set(loaded)
    return CheckpointReport(
        path=str(path),
        kind=KIND_VMAMBA,
        loaded=loaded,
        missing=[k for k in model.state_dict() if k not in loaded_set],
        ignored=ignored,
        extras=extras,
        placeholders=placeholders,
    )


# ---- saving ----------------------------------------------------------------------------------------

def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``{'model': state_dict}`` (the official format) atomically: temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"model": model.state_dict()}, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
