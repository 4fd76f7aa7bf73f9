"""The training curve: mean loss per logged window and val oIoU at the evaluation points vs step."""

from __future__ import annotations

from pathlib import Path


def plot_curve(rows: list[dict], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], color="tab:blue", lw=1, label="loss (dice + BCE)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    evals = [r for r in rows if r.get("val_oIoU") not in (None, "")]
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in evals], [r["val_oIoU"] for r in evals], "o-", color="tab:red", ms=3, label="val oIoU")
    ax2.set_ylabel("val oIoU", color="tab:red")
    ax2.set_ylim(0, 1)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
