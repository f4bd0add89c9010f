"""Figures of evaluation results: arrays in, matplotlib Figure out."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from ccmnist import plots
from ccmnist.data import palette as palette_lib


def _annotate(ax, values, fmt, threshold, *, dark_above: bool = True, fontsize: float = 6.5):
  """Each cell's value, white on the colormap's dark side of `threshold` (above it when
  dark_above, as in 'Blues'; below it for 'viridis'), black on its light side."""
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize,
            color="white" if (v > threshold) == dark_above else "black")


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


def color_swap_figure(p_digit, p_color, *, n_per_cell: int | None = None, title: str = "",
                      grey: bool = False):
  """Two heatmaps [digit, color]: P(pred == digit) and P(pred == the color's digit); grey: the
  painted images were made grey before the model saw them (a grayscale run's probe)."""
  fig, axes = plt.subplots(1, 2, figsize=(12, 5.8), layout="constrained")
  names = [n.replace("_", " ") for n in palette_lib.COLOR_NAMES]
  for ax, values, name in ((axes[0], p_digit, "P(pred = digit)  (follows shape)"),
                           (axes[1], p_color, "P(pred = color's digit)  (follows color)")):
    values = np.asarray(values)
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    _annotate(ax, values, "{:.2f}", 0.5, dark_above=False, fontsize=7)
    ax.set_xticks(range(10))
    # Slanted, so names as long as 'forest green' do not run into their neighbours.
    ax.set_xticklabels(names, fontsize=8, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(10))
    ax.set_xlabel("painted color, then made grey" if grey
                  else "painted color (color c is digit c's cue)")
    ax.set_ylabel("digit")
    ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  suffix = f"  ({n_per_cell} digits per cell)" if n_per_cell else ""
  default = "Color-swap probe, images made grey as the run's data" if grey else "Color-swap probe"
  fig.suptitle((title or default) + suffix, fontsize=11)
  return fig


def _merge_identical(runs: dict) -> dict:
  """{'a = b': curves} for runs whose curves are equal in every split (e.g. a grid's point that
  is another run by construction): one line, named by all of them."""
  names = []  # [[names...], curves] in the runs' order.
  for name, curves in runs.items():
    same = next((group for group in names if group[1] == curves), None)
    if same is None:
      names.append([[name], curves])
    else:
      same[0].append(name)
  return {" = ".join(group): curves for group, curves in names}


def training_curves_figure(runs: dict, *, splits=("test_easy", "test_hard"), title: str = ""):
  """Accuracy per epoch of several runs, {name: {'epoch': [...], split: [...]}}: one panel per
  split, one color per model (plots.model_color, the first name's where identical curves are
  merged into one line) and its own marker, so curves that coincide in part still show every
  model's markers; earlier runs are drawn over later ones."""
  runs = _merge_identical(runs)
  markers = ("o", "s", "^", "D", "v", "P", "X", "*")
  fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits) + 2.0, 3.8), sharey=True,
                           squeeze=False)
  for ax, split in zip(axes[0], splits):
    for i, (name, curves) in enumerate(runs.items()):
      if split in curves:
        ax.plot(curves["epoch"], curves[split], "-", lw=1.5, marker=markers[i % len(markers)],
                markersize=5, markerfacecolor="none",
                color=plots.model_color(name.split(" = ")[0]), label=name,
                zorder=3 + len(runs) - i)  # The first named on top of runs that retrace it.
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_title(split, fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("accuracy")
  axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # No overlap.
  fig.suptitle(title or "Accuracy per epoch", fontsize=10)
  fig.tight_layout()
  return fig
