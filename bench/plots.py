"""Report figures: latency distribution, logit error histogram, mask overlays.

Built on ``matplotlib.figure.Figure`` (Agg canvas, no pyplot): no display needed and no global
backend state touched. Each figure is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..atomic import atomic_path

DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


def latency_boxplot(series: dict[str, list[float]], path: Path, title: str) -> Path:
    """One box per 'runtime @ resolution' label over its per-iteration latency samples (ms)."""
    labels = list(series)
    fig = Figure(figsize=(max(5.0, 1.3 * len(labels) + 2), 4.0))
    ax = fig.add_subplot()
    ax.boxplot([series[k] for k in labels], showfliers=True, whis=(5, 95))
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=20, ha="right")
    medians = [float(np.median(series[k])) for k in labels]
    for i, m in enumerate(medians, start=1):
        ax.annotate(f"{m:.1f}", (i, m), textcoords="offset points", xytext=(24, 0), fontsize=8, va="center")
    ax.set_ylabel("latency per iteration (ms)")
    ax.set_yscale("log" if max(medians) / max(min(medians), 1e-9) > 20 else "linear")
    ax.set_title(title + "\n(box: quartiles, whiskers: p5-p95, label: median)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def error_histogram(errors: dict[str, np.ndarray], path: Path) -> Path:
    """Histogram of (runtime - reference) logits per label, log-count axis."""
    fig = Figure(figsize=(6.5, 4.0))
    ax = fig.add_subplot()
    finite = [e[np.isfinite(e)] for e in errors.values()]
    span = max((float(np.abs(e).max()) for e in finite if e.size), default=0.0) or 1e-12
    bins = np.linspace(-span, span, 81)
    for (label, _), e in zip(errors.items(), finite):
        ax.hist(e.ravel(), bins=bins, histtype="step", label=label, log=True)
    ax.set_xlabel("runtime logit - PyTorch fp32 reference logit")
    ax.set_ylabel("pixels")
    ax.set_title("logit error distribution", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def highlight(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with ``mask`` in its own colours and everything else dimmed to grey.

    Why not a colour tint: the demo scenes hold red, green, blue, yellow, purple and orange shapes,
    and any tint vanishes on a shape of its own colour (a blue mask on "the blue square"). Dimming
    the rest works on every palette, photographs included.
    """
    grey = rgb.mean(axis=2, keepdims=True)
    dimmed = np.broadcast_to(0.15 + 0.35 * grey, rgb.shape)
    return np.where(mask[..., None], rgb, dimmed).astype(np.float32)


def mask_overlay(image, reference_mask: np.ndarray, runtime_mask: np.ndarray, path: Path, runtime: str, title: str,
                 truth_mask: np.ndarray | None = None) -> Path:
    """Three panels over the image: reference mask, runtime mask, pixels where they differ. Each mask
    keeps the image's colours inside and is outlined (cyan: reference, magenta: runtime); the rest is
    dimmed. With ``truth_mask`` (the demo scene's), its outline is drawn in yellow on the two mask
    panels, so a reader sees at once whether the masks are right, not only whether the runtimes agree."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    diff = reference_mask != runtime_mask
    panels = (
        ("PyTorch fp32 reference mask", reference_mask, "cyan"),
        (f"{runtime} mask", runtime_mask, "magenta"),
        (f"difference: {int(diff.sum())} px ({100 * diff.mean():.3f}%)", diff, None),
    )
    height, width = diff.shape
    fig = Figure(figsize=(11, 11 / 3 * height / width + 0.9), layout="constrained")
    outline = truth_mask is not None and truth_mask.shape == diff.shape and truth_mask.any()
    for i, (name, mask, edge) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, i)
        if edge is None:  # differing pixels in solid red over the dimmed image: visible even when few
            over = highlight(rgb, np.zeros_like(mask))
            over[mask] = (1.0, 0.1, 0.1)
        else:
            over = highlight(rgb, mask)
        ax.imshow(over)
        if edge is not None and mask.any() and not mask.all():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=edge, linewidths=0.9)
        if outline and i < 3:
            ax.contour(truth_mask.astype(np.float32), levels=[0.5], colors="yellow", linewidths=1.2)
            name += " (yellow: true mask)"
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
