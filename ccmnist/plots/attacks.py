"""Figures of the adversarial analysis: arrays in, matplotlib Figure out."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines as mlines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ccmnist import plots  # noqa: E402


_STYLES = ("-", "--", ":")
_CRITERIA = {"prob": "prob: p(target) above the threshold", "argmax": "argmax: target predicted"}


def sweep_curves(epsilons, rates: dict, *, ylabel: str = "attack success rate",
                 title: str = "", marker_eps: float | None = None, norm: str = "linf"):
  """Success rate vs epsilon; rates {model name: [E] rates} (or {name: {label: [E]}}).

  One color per model, one line style per label (the success criterion); the legend, right of
  the axes and off the curves, lists the models by color and the labels by line style.
  norm names the epsilon ball on the x axis ('linf' or 'l2').
  """
  fig, ax = plt.subplots(figsize=(7.4, 4.0))
  labels = []
  for name, r in rates.items():
    series = r if isinstance(r, dict) else {"": r}
    for (label, v), style in zip(series.items(), _STYLES):
      ax.plot(epsilons, v, style, marker="o", ms=4, color=plots.model_color(name))
      if label not in labels:
        labels.append(label)
  if marker_eps is not None:
    ax.axvline(marker_eps, color="0.6", lw=0.8, ls=":")
  ax.set_xlabel(f"epsilon ({'L2' if norm == 'l2' else 'Linf'}, pixel units of 255)")
  ax.set_ylabel(ylabel)
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  handles = [mlines.Line2D([], [], color=plots.model_color(n), marker="o", ms=4, label=n)
             for n in rates]
  handles += [mlines.Line2D([], [], color="0.3", ls=style, label=_CRITERIA.get(lab, lab))
              for lab, style in zip(labels, _STYLES) if lab]
  if marker_eps is not None:
    handles.append(mlines.Line2D([], [], color="0.6", lw=0.8, ls=":",
                                 label=f"the study's epsilon ({marker_eps:g})"))
  ax.legend(handles=handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0),
            frameon=False)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def min_eps_histograms(min_eps: dict, *, eps_max: float, bins: int = 30, title: str = ""):
  """Histogram of per-example minimal epsilon per model; failures (inf) in a last bin."""
  fig, ax = plt.subplots(figsize=(5.6, 3.8))
  edges = np.linspace(0.0, eps_max, bins + 1)
  over = eps_max * 1.06
  for name, m in min_eps.items():
    m = np.asarray(m, np.float64)
    shown = np.where(np.isfinite(m), m, over)
    med = np.quantile(m, 0.5, method="inverted_cdf") if m.size else np.nan
    line = ax.hist(shown, bins=np.append(edges, over + (edges[1] - edges[0])), alpha=0.5,
                   color=plots.model_color(name),
                   label=f"{name} (median {med:.2f}, fail {np.mean(~np.isfinite(m)):.0%})")
    if np.isfinite(med):
      ax.axvline(med, color=line[2][0].get_facecolor(), lw=1.5)
  ax.axvline(eps_max, color="0.3", lw=0.8, ls="--")
  ax.text(over, ax.get_ylim()[1] * 0.95, "none\nwithin", fontsize=7, ha="left", va="top")
  ax.set_xlabel("minimal epsilon for success (pixel units)")
  ax.set_ylabel("examples")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def transfer_heatmaps(names, panels: dict, *, title: str = ""):
  """One heatmap per panel {label: [source][evaluated on] matrix}, values annotated."""
  k = len(panels)
  fig, axes = plt.subplots(1, k, figsize=(2.2 + 2.0 * k + 0.6 * len(names) * k, 3.2 +
                                          0.3 * len(names)), squeeze=False)
  for ax, (label, mat) in zip(axes[0], panels.items()):
    mat = np.asarray(mat, np.float64)
    im = ax.imshow(mat, vmin=0.0, vmax=1.0, cmap="magma")
    for i in range(mat.shape[0]):
      for j in range(mat.shape[1]):
        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=9,
                color="white" if mat[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("crafted on")
    ax.set_title(label, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def _shared_range(arrays, *, low_quantile: float = 0.01) -> tuple:
  """(vmin, vmax) of one color scale over several maps: vmax their largest value, vmin their
  `low_quantile`, so the scale spans the values the maps take rather than 0 to epsilon (most
  pixels of an L-inf attack sit at the budget; the differences are below it)."""
  v = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
  vmax = float(v.max()) if v.size else 1.0
  vmin = float(np.quantile(v, low_quantile)) if v.size else 0.0
  return (vmin, vmax) if vmax > vmin else (min(vmin, vmax - 1e-6), vmax)


def perturbation_maps(originals: dict, advs: dict, *, captions: dict | None = None,
                      title: str = ""):
  """Rows per model: original, adversarial, |delta| (channel mean), chromatic part of delta.

  originals and advs {name: [H, W, 3]} in pixels [0, 255] (each model's own image: models may
  be trained on the digits with or without noise). |delta| shares one color scale across the
  models, from the 1st percentile of its values to the largest (a colorbar in pixel levels);
  the chromatic column shows delta minus its per-pixel channel mean as 0.5 + chroma / (2 s),
  s the largest |chroma| of any model, so grey is no chromatic change and no value is clipped.
  """
  names = list(advs)
  height = 2.75 * len(names) + 1.2  # Each row: a square image, its title and its caption.
  fig, axes = plt.subplots(len(names), 4, figsize=(8.6, height), squeeze=False)
  x0s = {n: np.asarray(originals[n], np.float64) for n in names}
  deltas = {n: np.asarray(advs[n], np.float64) - x0s[n] for n in names}
  chromas = {n: d - d.mean(-1, keepdims=True) for n, d in deltas.items()}
  vmin, vmax = _shared_range([np.abs(d).mean(-1) for d in deltas.values()])
  scale = max(float(np.abs(c).max()) for c in chromas.values()) or 1.0
  for row, name in zip(axes, names):
    row[0].imshow(np.clip(x0s[name], 0, 255).astype(np.uint8))
    row[1].imshow(np.clip(np.round(x0s[name] + deltas[name]), 0, 255).astype(np.uint8))
    im = row[2].imshow(np.abs(deltas[name]).mean(-1), cmap="magma", vmin=vmin, vmax=vmax)
    row[3].imshow(np.clip(0.5 + chromas[name] / (2 * scale), 0, 1))
    row[0].set_ylabel(name, fontsize=9)
    cap = (captions or {}).get(name, "")
    for ax, t in zip(row, ("original", "adversarial", "|delta| (mean over RGB)",
                           "chromatic part of delta")):
      ax.set_title(t, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    row[1].set_xlabel(cap, fontsize=8)  # Under the image: a one-line title keeps rows apart.
  fig.suptitle(title, fontsize=10)
  key_in = 0.9  # Inches below the panels for the keys of the last two columns.
  fig.tight_layout(rect=(0, key_in / height, 1, 1 - 0.3 / height))  # Room for the title.
  cax = fig.add_axes((0.52, 0.55 * key_in / height, 0.2, 0.12 / height))
  fig.colorbar(im, cax=cax, orientation="horizontal", extend="min").set_label(
      "|delta|, pixel levels of 255", fontsize=7)
  cax.tick_params(labelsize=7)
  fig.text(0.76, 0.6 * key_in / height,
           f"chromatic part: grey = none,\nfull color = \u00b1{scale:.1f} levels", fontsize=7,
           va="center")
  return fig


def mean_abs_delta_maps(maps: dict, *, shares: dict | None = None, title: str = ""):
  """Mean |delta| over examples per model: channel mean and each of R, G, B.

  One color scale for every panel, from the 1st percentile of the values to the largest, so
  the structure below the budget shows (one colorbar, in pixel levels of 255).
  shares: {name: (color-shift share, its null)}, written under the model's name.
  """
  names = list(maps)
  height = 2.1 * len(names) + 1.0
  fig, axes = plt.subplots(len(names), 4, figsize=(8.0, height), squeeze=False)
  vmin, vmax = _shared_range([np.asarray(m) for m in maps.values()])
  for row, name in zip(axes, names):
    m = np.asarray(maps[name], np.float64)
    for ax, (label, img) in zip(row, (("mean over RGB", m.mean(-1)), ("R", m[..., 0]),
                                      ("G", m[..., 1]), ("B", m[..., 2]))):
      im = ax.imshow(img, cmap="magma", vmin=vmin, vmax=vmax)
      ax.set_title(label, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    share = (shares or {}).get(name)
    row[0].set_ylabel(name + (f"\ncolor shift {share[0]:.3f}\n(null {share[1]:.3f})"
                              if share is not None else ""), fontsize=9)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.75 / height, 1, 1 - 0.25 / height))
  cax = fig.add_axes((0.25, 0.4 / height, 0.5, 0.12 / height))
  fig.colorbar(im, cax=cax, orientation="horizontal", extend="min").set_label(
      f"mean |delta| over the attacked images, pixel levels of 255 (scale {vmin:.1f} to "
      f"{vmax:.1f})", fontsize=8)
  cax.tick_params(labelsize=7)
  return fig


def certified_accuracy_curves(radii, curves: dict, *, reach: dict | None = None,
                              title: str = ""):
  """Certified accuracy against L2 radius: one panel per sigma, a line per model.

  curves {panel label (a sigma): {model name: [R] certified accuracy at each of radii}};
  radii in pixel units of 255. reach {panel label: the largest radius CERTIFY can give there}:
  a dotted line marks it and the curves stop at it (past it 0 is by construction). The
  legend sits below the panels, off the data.
  """
  k = len(curves)
  fig, axes = plt.subplots(1, k, figsize=(3.6 * k + 0.6, 3.6), squeeze=False, sharey=True)
  radii = np.asarray(radii, np.float64)
  for ax, (label, by_model) in zip(axes[0], curves.items()):
    limit = (reach or {}).get(label, np.inf)
    shown = radii <= limit
    for name, acc in by_model.items():
      ax.plot(radii[shown], np.asarray(acc)[shown], marker="o", ms=3,
              color=plots.model_color(name), label=name)
    if limit <= radii.max():  # Past the grid it bounds nothing drawn.
      ax.axvline(limit, color="0.4", ls=":", lw=1)
      ax.text(limit, 0.98, f" largest\n certifiable\n {limit:.0f}", fontsize=7, va="top",
              ha="left" if limit < 0.7 * radii.max() else "right", color="0.3")
    ax.set_xlim(radii.min() - 8, radii.max() + 8)
    ax.set_xlabel("L2 radius (pixel units of 255)")
    ax.set_title(label, fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("certified accuracy")
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8,
             frameon=False)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.1, 1, 1))
  return fig
