"""Figures of the debiasing benchmark: arrays in, matplotlib Figure out."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines as mlines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# One color per method in every benchmark figure; related methods share a hue (consistency and
# its ablation cf_augment, the two group-balancing ones).
METHOD_COLORS = {
    "erm": "#000000", "gradient_penalty": "#ff7f0e", "consistency": "#2ca02c",
    "cf_augment": "#98df8a", "groupdro": "#d62728", "reweight": "#9467bd",
    "balanced_sampling": "#c5b0d5", "dfr": "#e377c2", "irm": "#393b79", "vrex": "#17becf",
    "jtt": "#8c564b", "lff": "#1f77b4", "eiil": "#e7ba52", "random_recolor": "#bcbd22",
    "grayscale": "#7f7f7f", "identify": "#ad494a",
}
_OTHER_COLORS = ("#637939", "#7b4173", "#843c39", "#5254a3")


def method_color(name: str):
  """The color of a benchmark entry in every figure (a stable pick for names not listed)."""
  return METHOD_COLORS.get(name) or _OTHER_COLORS[sum(map(ord, name)) % len(_OTHER_COLORS)]


# The methods' families, one column of panels each in accuracy_vs_ratio_figure (ERM, the
# reference, is drawn in every one); an entry not listed goes to a last 'other' column.
FAMILIES = {
    "told the bias is color": ("consistency", "cf_augment", "random_recolor", "grayscale"),
    "group labels": ("groupdro", "reweight", "balanced_sampling", "dfr"),
    "invariance across environments": ("irm", "vrex"),
    "told nothing of the bias": ("gradient_penalty", "jtt", "lff", "eiil"),
}
REFERENCE = "erm"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_DODGE = 0.02  # log10 units between neighbouring methods of a panel.


def _families(names) -> dict:
  """{family: [its entries among names, in FAMILIES' order]}: families with an entry, then
  'other' for the entries no family lists; the reference alone makes one column of its own."""
  listed = {m for ms in FAMILIES.values() for m in ms}
  out = {f: [m for m in ms if m in names] for f, ms in FAMILIES.items()}
  out["other"] = [m for m in names if m not in listed and m != REFERENCE]
  out = {f: ms for f, ms in out.items() if ms}
  return out or {"": []}


def accuracy_vs_ratio_figure(panels: dict, *, titles: dict | None = None,
                             ylabel: str = "unbiased test accuracy (%)"):
  """Small multiples: a row per key of `panels` ({panel: {method: (ratios, means, stds)}},
  accuracies in [0, 1], None where a method has no number), a column per method family
  (FAMILIES), ERM (black, x) drawn in every panel as the reference; accuracy against the
  bias-conflicting ratio (log axis, in percent), one color and marker per method (the grayscale
  oracle dashed). Under each column, the legend of its methods, every method listed even where
  it has no number. titles: {method: label}."""
  titles = titles or {}
  names = list(dict.fromkeys(m for series in panels.values() for m in series))
  families = _families(names)
  rows, cols = max(1, len(panels)), len(families)
  longest = max(len(ms) for ms in families.values()) + (REFERENCE in names)
  legend_in = 0.2 * longest + 0.35  # Inches below the panels.
  height = 3.0 * rows + 0.5 + legend_in
  fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.9, height), squeeze=False,
                           sharey=True)
  style = {REFERENCE: dict(color=method_color(REFERENCE), marker="x", ls="-", lw=1.2)}
  for ms in families.values():
    for k, m in enumerate(ms):
      style[m] = dict(color=method_color(m), marker=_MARKERS[k % len(_MARKERS)],
                      ls="--" if m == "grayscale" else "-", lw=1.5)
  for i, (panel, series) in enumerate(panels.items()):
    for j, (family, ms) in enumerate(families.items()):
      ax = axes[i, j]
      ratios_all = set()
      drawn = [n for n in ([REFERENCE] if REFERENCE in series else []) + ms if n in series]
      for d, name in enumerate(drawn):
        ratios, means, stds = series[name]
        keep = [k for k, m in enumerate(means) if m is not None]
        if not keep:
          continue
        x = np.asarray([100 * ratios[k] for k in keep])
        ratios_all.update(x.tolist())
        # Each method a little to the side of its ratio, so that equal values stay visible.
        dodge = 10 ** (_DODGE * (d - (len(drawn) - 1) / 2))
        ax.errorbar(x * dodge, [100 * means[k] for k in keep],
                    yerr=[100 * (stds[k] or 0.0) for k in keep], ms=5, capsize=2,
                    markerfacecolor="none" if name != REFERENCE else None, **style[name])
      ax.set_xscale("log")
      ticks = sorted(ratios_all)
      if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}%" for t in ticks], fontsize=8)
        ax.set_xlim(ticks[0] / 1.6, ticks[-1] * 1.6)
        ax.minorticks_off()
      ax.set_ylim(0, 100)
      ax.grid(alpha=0.3)
      ax.tick_params(axis="y", labelsize=8)
      if i == 0:
        ax.set_title(family, fontsize=10)
      if j == 0:
        ax.set_ylabel(f"{panel}\n{ylabel}", fontsize=8)
      if i == rows - 1:
        ax.set_xlabel("bias-conflicting share of train", fontsize=8)
  fig.tight_layout(rect=(0, legend_in / height, 1, 1))
  for j, ms in enumerate(families.values()):
    shown = ([REFERENCE] if REFERENCE in names else []) + ms
    handles = [mlines.Line2D([], [], ms=5, label=titles.get(m, m),
                             markerfacecolor="none" if m != REFERENCE else None, **style[m])
               for m in shown]
    box = axes[-1, j].get_position()
    fig.legend(handles=handles, loc="upper center", fontsize=7.5, frameon=False,
               bbox_to_anchor=(box.x0 + box.width / 2, legend_in / height))
  return fig


def uses_color_figure(panels: dict, *, titles: dict | None = None):
  """One panel per key of `panels` ({panel: {'points': [(method, ratio, accuracy, uses)],
  'null': uses of random inits or None}}, rates in [0, 1]): how much a method uses color
  against its group-balanced accuracy (method_scatter)."""
  return method_scatter(panels, titles=titles, xlabel="group-balanced test accuracy (%)",
                        ylabel="uses color: predictions changed by recoloring (%)",
                        null_label="random inits of the architecture\n(null)",
                        x_from_data=True)


def carries_color_figure(panels: dict, *, titles: dict | None = None):
  """One panel per key of `panels` ({panel: {'points': [(method, ratio, uses, probe)],
  'null': the random inits' color probe or None}}, rates in [0, 1]): how much color a method's
  features carry (a linear probe) against how much its predictions use it (method_scatter).
  Low use with high legibility: color taken from the output, not the representation."""
  return method_scatter(panels, titles=titles,
                        xlabel="uses color: predictions changed by recoloring (%)",
                        ylabel="carries color: color probe on the features (%)",
                        null_label="color probe of random inits\n(null)", x_from_data=False)


def _ratio_markers(ratios) -> dict:
  """{ratio: marker}, from the largest ratio down, in _MARKERS' order."""
  return {r: _MARKERS[i % len(_MARKERS)] for i, r in enumerate(sorted(set(ratios), reverse=True))}


def method_scatter(panels: dict, *, titles, xlabel: str, ylabel: str, null_label: str,
                   x_from_data: bool):
  """One panel per key of `panels` ({panel: {'points': [(method, ratio, x, y)], 'null': a y
  or None}}, rates in [0, 1], drawn in %): one point per method and ratio, its color the
  method's and its marker the ratio's (the grayscale oracle hollow); a thin line joins each
  method's ratios; right of the panels a legend of every method and the null, and one of the
  ratios' markers. x spans from a multiple of 10 below the lowest point to 100 (x_from_data) or
  from 0 to just above the highest; y from 0 to just above the highest."""
  titles = titles or {}
  names = list(dict.fromkeys(p[0] for panel in panels.values() for p in panel["points"]))
  markers = _ratio_markers(p[1] for panel in panels.values() for p in panel["points"])
  n = max(1, len(panels))
  cols = min(n, 2)
  rows = math.ceil(n / cols)
  legend_w = 3.4  # Inches: one column of method titles at fontsize 8.
  width = 5.2 * cols + legend_w
  height = max(4.2 * rows, 0.2 * (len(names) + len(markers) + 6) + 0.6)
  fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
  for ax, (panel, got) in zip(axes.flat, panels.items()):
    by_method = {}
    for name, ratio, x, y in got["points"]:
      by_method.setdefault(name, []).append((ratio, 100 * x, 100 * y))
    for name, pts in by_method.items():  # A thin line joins one method's ratios, in order.
      pts.sort()
      ax.plot([p[1] for p in pts], [p[2] for p in pts], color=method_color(name), lw=0.8,
              alpha=0.5, zorder=2)
      for ratio, x, y in pts:
        ax.scatter([x], [y], marker=markers[ratio], s=36, zorder=3, linewidth=0.8,
                   **_point_colors(name))
    if got.get("null") is not None:
      ax.axhline(100 * got["null"], color="0.4", ls=":", lw=1)
    xs = [100 * p[2] for p in got["points"]]
    ys = [100 * p[3] for p in got["points"]] + [100 * (got.get("null") or 0.0)]
    if x_from_data:
      ax.set_xlim(max(0.0, 10 * math.floor(min(xs) / 10) - 2), 102)
    else:
      ax.set_xlim(-2, min(102.0, 10 * math.ceil(max(xs) / 10) + 5))
    ax.set_ylim(-2, min(103.0, 10 * math.ceil(max(ys) / 10) + 5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(panel, fontsize=10)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  handles = [mlines.Line2D([], [], marker="o", ms=5, ls="-", lw=0.8, label=titles.get(m, m),
                           color=method_color(m),
                           markerfacecolor=_point_colors(m)["facecolor"]) for m in names]
  handles.append(mlines.Line2D([], [], color="0.4", ls=":", lw=1, label=null_label))
  legend_x = 1 - legend_w / width
  fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(legend_x + 0.01, 0.98),
             ncol=1, fontsize=8, frameon=False, title="method (a line joins its ratios)",
             title_fontsize=8)
  ratio_handles = [mlines.Line2D([], [], marker=mk, ms=5, ls="", color="0.3",
                                 label=f"{100 * r:g}%") for r, mk in markers.items()]
  fig.legend(handles=ratio_handles, loc="lower left", bbox_to_anchor=(legend_x + 0.01, 0.02),
             ncol=len(ratio_handles), fontsize=8, frameon=False,
             title="bias-conflicting share of train", title_fontsize=8, handletextpad=0.2,
             columnspacing=0.8)
  fig.tight_layout(rect=(0, 0, legend_x, 1))
  return fig


def _point_colors(name: str) -> dict:
  """A point's face and edge: the method's color, hollow for the grayscale oracle (grey
  input, told apart from the colored runs)."""
  color = method_color(name)
  if name == "grayscale":
    return {"facecolor": "none", "edgecolor": color}
  return {"facecolor": color, "edgecolor": "white"}
