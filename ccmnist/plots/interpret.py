"""Figures of the interpretability analyses: arrays in, matplotlib Figure out."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines as mlines  # noqa: E402
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402

from ccmnist import plots  # noqa: E402
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


# (row label, measure key, value within it) of each measure row of representation_summary. The
# whole-layer causal share is left out: in a sequential network it equals the input swap at
# every layer (interpret/representation.py), so its panels would be identical by construction.
_SUMMARY_ROWS = (
    ("probe: color\naccuracy", "probe", "color"),
    ("probe: digit\naccuracy", "probe", "digit"),
    ("color share of\nmovement r / (1 + r)", "invariance", "ratio"),
    ("causal: largest\n1-channel share", "causal", "max_channel"),
)
# Apart from the models' colors (plots.MODEL_COLORS), so a call is not read as a model.
_SELECTIVITY_COLORS = {"color": "0.2", "shape": "tab:cyan", "neither": "0.85"}


def _null_value(layer_result, key, field):
  """(random-init summary, hue-blind value) of one measure's null."""
  null = layer_result[f"{key}_null"]
  return null["random"][field], null["hue_blind"][field]


def _color_share(v):
  """The invariance ratio r as the color share of a layer's movement, r / (1 + r) in [0, 1]
  (None stays None): comparable across layers and models on a linear axis."""
  return None if v is None else float(v) / (1.0 + float(v))


def _selectivity_shares(layer_result) -> dict:
  """{'color', 'shape', 'neither': share of the layer's channels}, from the channel classes
  ('mixed' and 'dead' are neither)."""
  classes = np.asarray(layer_result["invariance"]["classes"])
  n = max(len(classes), 1)
  color, shape = np.sum(classes == "color") / n, np.sum(classes == "shape") / n
  return {"color": color, "shape": shape, "neither": 1.0 - color - shape}


def representation_summary(results: dict, *, layers, title: str = ""):
  """Rows = measures, columns = layers, one bar per model: the probes, the invariance ratio as
  the color share of movement r / (1 + r), the largest 1-channel causal share, each beside its
  random-init null (grey band from the smallest init to the 95th percentile, grey tick at the
  mean) and the model's hue-blind copy (black dashed line across its bar); a last row stacks the
  share of channels called color, shape and neither. results {model: representation summary
  (interpret.json)}."""
  names = list(results)
  nrows = len(_SUMMARY_ROWS) + 1
  width = 1.6 + 0.75 * max(len(names), 3) * len(layers)
  fig, axes = plt.subplots(nrows, len(layers), figsize=(width, 2.0 * nrows + 1.4),
                           squeeze=False, sharex=True)
  x = np.arange(len(names))
  half = 0.36
  for i, (label, key, field) in enumerate(_SUMMARY_ROWS):
    for j, layer in enumerate(layers):
      ax = axes[i, j]
      rows = [results[n]["layers"][layer] for n in names]
      conv = _color_share if key == "invariance" else (lambda v: v)
      vals = [np.nan if r[key][field] is None else conv(r[key][field]) for r in rows]
      ax.bar(x, vals, color=[plots.model_color(n) for n in names], width=2 * half, zorder=2)
      for k, r in enumerate(rows):
        rand, blind = _null_value(r, key, field)
        if rand["mean"] is not None:
          lo, mean, hi = conv(rand["min"]), conv(rand["mean"]), conv(rand["p95"])
          ax.fill_between([k - half, k + half], lo, hi, color="0.55", alpha=0.45, lw=0,
                          zorder=3)
          ax.plot([k - half, k + half], [mean, mean], color="0.3", lw=1.2, zorder=4)
        if blind is not None:
          ax.plot([k - half, k + half], [conv(blind)] * 2, color="k", lw=1.4, ls="--",
                  zorder=5)
      if key == "probe":
        ax.axhline(0.1, color="0.4", lw=0.8, ls=":", zorder=1)
      ax.set_ylim(0, 1.02)
      ax.tick_params(axis="y", labelsize=7)
      ax.grid(axis="y", alpha=0.3, zorder=0)
      if j == 0:
        ax.set_ylabel(label, fontsize=8)
      if i == 0:
        ax.set_title(layer, fontsize=10)
  for j, layer in enumerate(layers):
    ax = axes[-1, j]
    bottom = np.zeros(len(names))
    for cls, color in _SELECTIVITY_COLORS.items():
      share = np.array([_selectivity_shares(results[n]["layers"][layer])[cls] for n in names])
      ax.bar(x, share, bottom=bottom, color=color, width=2 * half, zorder=2)
      bottom += share
    for k, n in enumerate(names):  # The counts, color / shape / neither, on each bar.
      classes = np.asarray(results[n]["layers"][layer]["invariance"]["classes"])
      color, shape = int(np.sum(classes == "color")), int(np.sum(classes == "shape"))
      ax.text(k, 0.5, f"{color} / {shape} / {len(classes) - color - shape}", ha="center",
              va="center", fontsize=7, rotation=90, zorder=3,
              bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
    ax.set_ylim(0, 1.0)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    if j == 0:
      ax.set_ylabel("channels called\ncolor / shape / neither", fontsize=8)
  handles = [
      mpatches.Patch(color="0.55", alpha=0.45, label="random inits: smallest to 95th pct."),
      mlines.Line2D([], [], color="0.3", lw=1.2, label="random inits: mean"),
      mlines.Line2D([], [], color="k", lw=1.4, ls="--", label="hue-blind copy"),
      mlines.Line2D([], [], color="0.4", lw=0.8, ls=":", label="chance (probes)")] + [
      mpatches.Patch(color=c, label=f"channels called {k}")
      for k, c in _SELECTIVITY_COLORS.items()]
  fig.suptitle(title or "Representation measures beside their null", fontsize=10)
  legend_in = 0.75
  fig.tight_layout(rect=(0, legend_in / (2.0 * nrows + 1.4), 1, 0.98))
  fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7.5, frameon=False)
  return fig


# The calls in representation_summary's colors; 'mixed' and 'dead' are its 'neither'.
_CLASS_COLORS = {"color": _SELECTIVITY_COLORS["color"], "shape": _SELECTIVITY_COLORS["shape"],
                 "mixed": "0.65", "dead": "white"}


def invariance_channels(results: dict, *, layers, title: str = ""):
  """Rows = models, columns = layers: each channel's invariance ratio (log scale), colored by
  its class, over the random inits' range (grey band: the thresholds of the calls)."""
  names = list(results)
  fig, axes = plt.subplots(len(names), len(layers),
                           figsize=(3.0 * len(layers) + 0.8, 2.1 * len(names) + 0.8),
                           squeeze=False)
  for i, name in enumerate(names):
    for j, layer in enumerate(layers):
      ax = axes[i, j]
      r = results[name]["layers"][layer]
      inv, rand = r["invariance"], r["invariance_null"]["random"]
      ratio = np.asarray(inv["channel_ratio"], np.float64)
      ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, np.nan)
      ax.axhspan(rand["channel_ratio_lo"], rand["channel_ratio_hi"], color="0.85", lw=0)
      for cls, color in _CLASS_COLORS.items():
        k = np.flatnonzero(np.asarray(inv["classes"]) == cls)
        if len(k):
          ax.scatter(k, ratio[k], s=16, color=color, edgecolor="k", lw=0.4, label=cls,
                     zorder=3)
      ax.set_yscale("log")
      # Labels at 1, 2 and 5 of each decade: a panel spans about one decade.
      ax.yaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
      ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
      ax.yaxis.set_minor_formatter(mticker.NullFormatter())
      ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
      ax.tick_params(labelsize=7)
      f = inv["fractions"]
      ax.set_title(f"{name} {layer}: color {f['color']:.0%}, shape {f['shape']:.0%}",
                   fontsize=8, color=plots.model_color(name))
      if j == 0:
        ax.set_ylabel("color / digit energy (log)", fontsize=7)
      if i == len(names) - 1:
        ax.set_xlabel("channel", fontsize=7)
  handles = [plt.Line2D([], [], marker="o", ls="", color=c, markeredgecolor="k",
                        markeredgewidth=0.4, label=k) for k, c in _CLASS_COLORS.items()]
  fig.suptitle(title or "Per-channel counterfactual invariance", fontsize=9)
  fig.tight_layout(rect=(0, 0.04, 1, 0.97))
  fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=4, frameon=False)
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
