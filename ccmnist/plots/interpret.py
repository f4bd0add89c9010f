"""Figures of the interpretability analyses: arrays in, matplotlib Figure out."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ccmnist.data import palette as palette_lib  # noqa: E402
from ccmnist.plots import grid  # noqa: E402


def _off(ax):
  ax.set_xticks([])
  ax.set_yticks([])


def _as_rgb01(img):
  img = np.asarray(img, np.float32)
  return img / 255.0 if img.max() > 1.5 else img


def _panels(n: int, cols: int, *, panel_size, title_height: float):
  """A figure with n panels in rows of `cols` (ticks off, unused panels hidden); (fig, axes)."""
  rows = int(np.ceil(n / cols))
  w, h = panel_size
  fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows + title_height), squeeze=False)
  for k, ax in enumerate(axes.flat):
    _off(ax)
    if k >= n:
      ax.axis("off")
  return fig, list(axes.flat)[:n]


def overlay(ax, image, cam, *, alpha=0.5):
  """An image with a heatmap on top (jet colormap, values in [0, 1])."""
  ax.imshow(_as_rgb01(image))
  ax.imshow(np.asarray(cam), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
  _off(ax)


def gradcam_cases(images, case_titles, maps: dict, preds: dict, probs: dict, *,
                  title: str = ""):
  """Rows = cases; columns = the image, then one Grad-CAM overlay per model.

  images uint8[n, 28, 28, 3]; case_titles [n] str; maps {model: [n, 28, 28]};
  preds / probs {model: [n]} (the class the map explains and its softmax probability).
  """
  names = list(maps)
  n = len(images)
  fig, axes = plt.subplots(n, 1 + len(names), figsize=(2.1 * (1 + len(names)), 2.2 * n),
                           squeeze=False)
  for i in range(n):
    axes[i, 0].imshow(images[i])
    _off(axes[i, 0])
    axes[i, 0].set_title(case_titles[i], fontsize=9)
    for j, name in enumerate(names):
      overlay(axes[i, j + 1], images[i], maps[name][i])
      axes[i, j + 1].set_title(f"{name}: pred {int(preds[name][i])} "
                               f"({float(probs[name][i]):.2f})", fontsize=8)
  fig.suptitle(title or "Grad-CAM of the predicted class", fontsize=11)
  fig.tight_layout()
  return fig


def channel_grid(images, activations, *, layer: str, title: str = "", cols: int = 8):
  """One optimized image per channel, labeled 'conv0 ch 3' and the activation reached.

  images float[C, 28, 28, 3] in [0, 1] units (clipped to [0, 1] for display).
  """
  fig, axes = _panels(len(images), cols, panel_size=(1.6, 1.85), title_height=0.4)
  for k, ax in enumerate(axes):
    ax.imshow(np.clip(images[k], 0.0, 1.0))
    ax.set_title(f"{layer} ch {k}\nact {float(activations[k]):.3g}", fontsize=7)
  fig.suptitle(title or f"{layer}: activation maximization", fontsize=10)
  fig.tight_layout()
  return fig


def selectivity_heatmap(results: dict, *, layers, title: str = ""):
  """Rows = models, columns = layers; each panel: channels x {color, shape, rest} fractions.

  results {model: {layer: {'color', 'shape', 'rest', 'classes', 'fractions'}}}.
  """
  names = list(results)
  fig, axes = plt.subplots(len(names), len(layers),
                           figsize=(3.4 * len(layers) + 1.2, 4.8 * len(names)), squeeze=False)
  im = None
  for i, name in enumerate(names):
    for j, layer in enumerate(layers):
      r = results[name][layer]
      mat = np.stack([r["color"], r["shape"], r["rest"]], axis=1)  # [C, 3]
      ax = axes[i, j]
      im = ax.imshow(np.nan_to_num(mat, nan=0.0), cmap="viridis", vmin=0.0, vmax=1.0,
                     aspect="auto")
      ax.set_xticks(range(3), ["color", "shape", "rest"], fontsize=8)
      ax.set_yticks(range(len(mat)),
                    [f"{k} {c[0].upper()}" for k, c in enumerate(r["classes"])], fontsize=6)
      f = r["fractions"]
      ax.set_title(f"{name} {layer}\ncolor {f['color']:.0%}, shape {f['shape']:.0%},\n"
                   f"mixed {f['mixed']:.0%}, dead {f['dead']:.0%}", fontsize=8)
  fig.subplots_adjust(left=0.08, right=0.84, top=0.88, bottom=0.05, wspace=0.45, hspace=0.45)
  fig.colorbar(im, cax=fig.add_axes([0.88, 0.3, 0.02, 0.4]),
               label="fraction of variance of cell means")
  fig.suptitle(title or "Channel selectivity (C color, S shape, M mixed, D dead)", fontsize=10)
  return fig


def cell_tables_figure(tables_KDC, classes, *, layer: str, title: str = "", cols: int = 8):
  """Each channel's [digit x color] table of mean activations (own color scale per channel)."""
  fig, axes = _panels(len(tables_KDC), cols, panel_size=(1.7, 1.9), title_height=0.5)
  for i, ax in enumerate(axes):
    ax.imshow(tables_KDC[i], cmap="magma")
    ax.set_title(f"{layer} ch {i} ({classes[i]})", fontsize=7)
  fig.suptitle((title or f"{layer}: mean activation per cell") +
               "  (rows digit 0-9, columns color 0-9)", fontsize=9)
  fig.tight_layout()
  return fig


def topk_grid(images, topk_indices, *, layer: str, labels=None, colors=None, title: str = ""):
  """Rows = channels, columns = the top-k dataset images of that channel, best first."""
  c, k = topk_indices.shape
  tiles = _as_rgb01(np.asarray(images)[topk_indices])  # [C, k, H, W, 3]
  h, pad = tiles.shape[2], 4
  fig, ax = plt.subplots(figsize=(0.75 * k + 0.9, 0.8 * c + 0.7))
  ax.imshow(grid.montage(tiles, pad=pad), interpolation="nearest")
  step = h + pad
  ax.set_xticks([])
  ax.set_yticks(grid.tile_centers(c, h, pad), [f"ch {i}" for i in range(c)], fontsize=7)
  ax.tick_params(length=0)
  for spine in ax.spines.values():
    spine.set_visible(False)
  if labels is not None and colors is not None:
    for i in range(c):
      for j in range(k):
        idx = topk_indices[i, j]
        ax.text(j * step + (h - 1) / 2, i * step + h - 0.3,
                f"{int(labels[idx])}/{palette_lib.COLOR_NAMES[int(colors[idx])][:5]}",
                ha="center", va="top", fontsize=4.5)
  ax.set_title(title or f"{layer}: top-{k} images per channel (digit/color)", fontsize=9)
  fig.tight_layout()
  return fig


def sanity_figure(images, rows: dict, *, title: str = ""):
  """Columns = images; rows = named map stacks (e.g. Grad-CAM trained / re-initialized)."""
  names = list(rows)
  n = len(images)
  fig, axes = plt.subplots(1 + len(names), n, figsize=(1.3 * n + 1.0, 1.4 * (1 + len(names))),
                           squeeze=False)
  for j in range(n):
    axes[0, j].imshow(images[j])
    _off(axes[0, j])
    for i, name in enumerate(names):
      axes[i + 1, j].imshow(rows[name][j], cmap="jet", vmin=0.0, vmax=1.0)
      _off(axes[i + 1, j])
  for i, name in enumerate(names):
    axes[i + 1, 0].set_ylabel(name, fontsize=7)
  fig.suptitle(title or "Model-randomization sanity check", fontsize=10)
  fig.tight_layout()
  return fig
