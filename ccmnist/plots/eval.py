"""Figures of evaluation results: arrays in, matplotlib Figure out."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from ccmnist.data import palette as palette_lib


def _annotate(ax, values, fmt, threshold):
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6.5,
            color="white" if v > threshold else "black")


def confusion_figure(confusion, *, title: str = "", normalize: bool = True):
  """Heatmap of a [true, predicted] confusion matrix (rows normalized to recall by default)."""
  cm = np.asarray(confusion, np.float64)
  values = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
  fig, ax = plt.subplots(figsize=(5.2, 4.6))
  im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
  _annotate(ax, values, "{:.2f}" if normalize else "{:.0f}",
            0.6 if normalize else 0.6 * values.max())
  ax.set_xlabel("predicted")
  ax.set_ylabel("true digit")
  ax.set_xticks(range(cm.shape[1]))
  ax.set_yticks(range(cm.shape[0]))
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def color_swap_figure(p_digit, p_color, *, n_per_cell: int | None = None, title: str = ""):
  """Two heatmaps [digit, color]: P(pred == digit) and P(pred == the color's digit)."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 5))
  names = [n.replace("_", "\n") for n in palette_lib.COLOR_NAMES]
  for ax, values, name in ((axes[0], p_digit, "P(pred = digit)  (follows shape)"),
                           (axes[1], p_color, "P(pred = color's digit)  (follows color)")):
    values = np.asarray(values)
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    _annotate(ax, values, "{:.2f}", 0.5)
    ax.set_xticks(range(10))
    ax.set_xticklabels(names, fontsize=7)
    ax.set_yticks(range(10))
    ax.set_xlabel("painted color (color c is digit c's cue)")
    ax.set_ylabel("digit")
    ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  suffix = f"  ({n_per_cell} digits per cell)" if n_per_cell else ""
  fig.suptitle((title or "Color-swap probe") + suffix, fontsize=11)
  fig.tight_layout()
  return fig


def training_curves_figure(runs: dict, *, splits=("test_easy", "test_hard"), title: str = ""):
  """Accuracy per epoch of several runs: {name: {'epoch': [...], split: [...]}}.

  One color and marker per run, one legend entry per run; line style per split (solid = first
  split, dashed = second, ...). Earlier runs are drawn wider, so a run whose curve coincides with
  a later one (a penalty too weak to matter) still shows as a rim around it.
  """
  styles = ("-", "--", ":", "-.")
  markers = ("o", "s", "^", "D", "v", "P", "X", "*")
  fig, ax = plt.subplots(figsize=(9, 4.5))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  n = len(runs)
  for i, (name, curves) in enumerate(runs.items()):
    width = 1.2 + 1.2 * (n - 1 - i)
    drawn = [s for s in splits if s in curves]
    for j, split in enumerate(splits):
      if split in curves:
        ax.plot(curves["epoch"], curves[split], styles[j % len(styles)], lw=width,
                marker=markers[i % len(markers)], markersize=2 + width,
                color=colors[i % len(colors)], label=name if split == drawn[0] else None)
  ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("epoch")
  ax.set_ylabel("accuracy")
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # Outside: no overlap.
  ax.set_title(title or "Accuracy per epoch (solid: " + ", dashed: ".join(splits) + ")",
               fontsize=10)
  fig.tight_layout()
  return fig
