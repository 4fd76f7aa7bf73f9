"""Which PyTorch model a command uses: a checkpoint file, the demo checkpoint, or seeded random weights.

Shared by ``export``, ``compare``, ``bench`` and ``eval`` so all build the model the same way;
``compare`` defaults to the variant/preset/seed/checkpoint recorded in the ONNX metadata by ``export``.
``choose_model`` is the rule of ``predict``, ``bench`` and ``eval``: ``--checkpoint FILE`` (its
preset and variant read from the file unless given), else ``--random-weights`` (seeded, tiny by
default), else the demo checkpoint (``remamber.demo``: tiny preset trained on synthetic shapes).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from remamber.errors import CheckpointError, InputError

VARIANTS = ("conv", "mamba")
PRESETS = ("base", "tiny")


def add_model_arguments(parser: argparse.ArgumentParser, defaults_from_graph: bool = False) -> None:
    g = parser.add_argument_group("model (checkpoint, or a preset with seeded random weights)")
    dflt = None if defaults_from_graph else "conv"
    note = " (default: as recorded in the ONNX file)" if defaults_from_graph else ""
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="official ReMamber checkpoint (.pth) or a file saved by remamber.checkpoint" + note)
    g.add_argument("--variant", choices=VARIANTS, default=dflt,
                   help="conv = ReMamber_Conv (paper), mamba = ReMamber_Mamba (released)" + (note or " (default conv)"))
    g.add_argument("--preset", choices=PRESETS, default=None if defaults_from_graph else "base",
                   help="model size; official checkpoints are 'base'" + (note or " (default base)"))
    g.add_argument("--seed", type=int, default=None if defaults_from_graph else 0,
                   help="seed of the random weights when no checkpoint is given" + (note or " (default 0)"))


def check_checkpoint_path(path: Path | None) -> None:
    if path is not None and not Path(path).is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist or is not a file; pass the path of ReMamber_Conv.pth / "
            f"ReMamber_Mamba.pth, or leave out --checkpoint to use the demo checkpoint (bench, eval, predict) or "
            f"seeded random weights (export)"
        )
    if path is not None:
        from remamber.validate.checkpoints import check_checkpoint_file

        check_checkpoint_file(path, "--checkpoint")  # a zip / pickle at all, before any model is built


def load_model(variant: str | None, preset: str | None, seed: int = 0, checkpoint: Path | None = None):
    """Build the model (eval mode) and load ``checkpoint`` into it when given. Returns (model, text).

    With a checkpoint, a variant or preset of None is taken from the file (read once); without one
    they default to conv / base."""
    import remamber
    from remamber.checkpoint import inspect_checkpoint, load_checkpoint

    if variant is not None and variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    check_checkpoint_path(checkpoint)
    contents = None
    if checkpoint is not None and (variant is None or preset is None):
        found_variant, found_preset, contents = inspect_checkpoint(checkpoint)
        variant, preset = variant or found_variant or "conv", preset or found_preset or "base"
    variant, preset = variant or "conv", preset or "base"
    model = remamber.build_model(variant=variant, preset=preset, seed=seed)
    if checkpoint is None:
        return model, f"ReMamber {variant}, {preset} preset, random weights (seed {seed})"
    report = load_checkpoint(model, checkpoint, contents=contents)
    return model.eval(), f"ReMamber {variant}, {preset} preset, weights from {checkpoint}\n{report}"


@dataclass
class ModelChoice:
    """The weights a run uses and how to describe them in CLI output and reports."""

    kind: str  # "demo", "checkpoint" or "random"
    variant: str | None  # None: read from the checkpoint when it is loaded
    preset: str | None
    seed: int
    checkpoint: Path | None
    description: str
    demo: object = None  # remamber.demo.DemoMetadata for the demo checkpoint

    @property
    def random(self) -> bool:
        return self.kind == "random"

    def as_config(self) -> dict:
        """The report's ``config.weights`` object."""
        return {"kind": self.kind, "description": self.description,
                "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
                "seed": self.seed if self.random else None,
                "demo_final": bool(self.demo.final) if self.demo is not None else None}

    def load(self):
        """Build and load the model; fills in a variant / preset read from the checkpoint. Returns (model, text)."""
        model, text = load_model(self.variant, self.preset, self.seed, self.checkpoint)
        self.variant, self.preset = getattr(model, "variant", self.variant), getattr(model, "preset", self.preset)
        return model, text


RANDOM_WARNING = ("the weights are RANDOM (seed {seed}), so every mask is meaningless: this run only exercises the "
                  "pipeline (parity and latency still hold). Leave out --random-weights for the demo checkpoint, or "
                  "pass --checkpoint FILE")


def choose_model(checkpoint: Path | None, random_weights: bool = False, variant: str | None = None,
                 preset: str | None = None, seed: int = 0, random_preset: str = "tiny") -> ModelChoice:
    """The rule of predict / bench / eval (see the module docstring); raises on contradictory options."""
    if checkpoint is not None and random_weights:
        raise InputError("--checkpoint and --random-weights contradict each other: give one of them")
    if checkpoint is not None:
        check_checkpoint_path(Path(checkpoint))
        return ModelChoice("checkpoint", variant, preset, seed, Path(checkpoint), f"weights from {checkpoint}")
    if random_weights:
        return ModelChoice("random", variant or "conv", preset or random_preset, seed, None,
                           f"RANDOM weights (seed {seed}): masks are meaningless; parity and latency only")
    from remamber.demo import demo_checkpoint

    path, meta = demo_checkpoint()
    for option, wanted, have in (("--variant", variant, meta.variant), ("--preset", preset, meta.preset)):
        if wanted is not None and wanted != have:
            raise InputError(f"{option} {wanted}: the demo checkpoint is the {meta.variant} variant, {meta.preset} "
                             f"preset; for another model pass --checkpoint FILE, or --random-weights for seeded "
                             "random weights")
    return ModelChoice("demo", meta.variant, meta.preset, seed, path, meta.label, demo=meta)


def model_metadata(variant: str, preset: str, seed: int, checkpoint: Path | None,
                   description: str | None = None) -> dict[str, str]:
    meta = {"remamber.weights": str(Path(checkpoint).resolve()) if checkpoint else f"random (seed {seed})"}
    if checkpoint is None:
        meta["remamber.seed"] = str(seed)
    if description:
        meta["remamber.weights_description"] = description
    return meta
