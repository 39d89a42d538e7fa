# Copyright 2025 The hf_supermask Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Training-curve plots drawn from a `Trainer`'s `state.log_history`."""

import math
import os
from pathlib import Path
from typing import Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


__all__ = ["plot_training_curves"]

_NO_EVAL = "no evaluation logged"


def _series(log_history: list[dict], key: str, x: str) -> tuple[list[float], list[float]]:
    """Return (xs, ys) for the log entries that hold a finite numeric `key` and the requested x coordinate."""
    x_key = "step" if x == "step" else "elapsed_seconds"
    xs, ys = [], []
    for entry in log_history:
        value, x_value = entry.get(key), entry.get(x_key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(x_value, bool) or not isinstance(x_value, (int, float)):
            continue
        if not (math.isfinite(value) and math.isfinite(x_value)):
            continue
        xs.append(float(x_value) / 60.0 if x == "time" else float(x_value))
        ys.append(float(value))
    return xs, ys


def _empty_panel(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_yticks([])


def plot_training_curves(
    log_history: list[dict],
    output_path: str | os.PathLike,
    title: str | None = None,
    x: Literal["step", "time"] = "step",
) -> Path:
    """
    Draw training curves from `trainer.state.log_history` and save them as a PNG.

    Panels, top to bottom: training loss (`"loss"`), validation BLEU (`"eval_bleu"`) and, only if some entry has it,
    the fraction of mask bits that changed since the previous evaluation (`"eval_mask_changed_fraction"`). Missing keys
    are tolerated: a panel without data says so (e.g. "no evaluation logged") instead of failing.

    Args:
        log_history (`list[dict]`):
            The `Trainer` log history (one dict per logging / evaluation event, each with a `"step"`).
        output_path (`str` or `os.PathLike`):
            Where to write the PNG; parent directories are created.
        title (`str`, *optional*):
            Figure title.
        x (`str`, *optional*, defaults to `"step"`):
            `"step"` plots against the global step; `"time"` plots against `"elapsed_seconds"` (shown in minutes),
            which entries must carry. If no entry has `"elapsed_seconds"`, falls back to `"step"`.

    Returns:
        `Path`: the written file.
    """
    if x not in ("step", "time"):
        raise ValueError(f"x must be 'step' or 'time', got {x!r}")
    log_history = list(log_history or [])
    if x == "time" and not any("elapsed_seconds" in entry for entry in log_history):
        # Older runs do not log wall-clock time; a step axis is more useful than an empty figure.
        x = "step"
    x_label = "elapsed time (minutes)" if x == "time" else "step"

    loss = _series(log_history, "loss", x)
    bleu = _series(log_history, "eval_bleu", x)
    changed = _series(log_history, "eval_mask_changed_fraction", x)
    has_changed = len(changed[0]) > 0
    has_eval = any(any(k.startswith("eval_") for k in entry) for entry in log_history)

    n_panels = 3 if has_changed else 2
    # A bare Figure on the Agg canvas, not pyplot: no display needed, no global backend switch, nothing to close.
    fig = Figure(figsize=(7.0, 2.6 * n_panels))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    if loss[0]:
        ax.plot(*loss, color="tab:blue", linewidth=1.2, marker="." if len(loss[0]) < 30 else None)
    else:
        _empty_panel(ax, "no training loss logged")
    ax.set_ylabel("training loss")
    ax.grid(True, alpha=0.3)

    ax = axes[1]
    if bleu[0]:
        ax.plot(*bleu, color="tab:green", linewidth=1.2, marker="o", markersize=3)
        ax.margins(x=0.05, y=0.2)  # leave room for the "best" label above the maximum
        best = max(range(len(bleu[1])), key=bleu[1].__getitem__)
        ax.annotate(
            f"best {bleu[1][best]:.2f}",
            (bleu[0][best], bleu[1][best]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    else:
        _empty_panel(ax, _NO_EVAL if not has_eval else "no eval_bleu logged")
    ax.set_ylabel("validation BLEU")
    ax.grid(True, alpha=0.3)

    if has_changed:
        ax = axes[2]
        ax.plot(*changed, color="tab:red", linewidth=1.2, marker="o", markersize=3)
        ax.set_ylabel("mask bits changed\n(since prev. eval)")
        ax.set_ylim(bottom=0.0)
        ax.grid(True, alpha=0.3)

    axes[-1].set_xlabel(x_label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output_path, format="png", dpi=120)
    return output_path
