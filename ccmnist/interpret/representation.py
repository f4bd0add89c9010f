"""What a layer represents, and what the model uses, each measured beside a null.

Stimuli (`counterfactual_stimuli`): n grey test digits, balanced over the classes, each in a
uniformly random palette color (independent of the digit), and two twins of every image that
differ from it in one factor only:
  x      digit d, color c;
  x_cf   the same grey digit in another color c' (its "recolored twin");
  x_alt  a grey digit of another class, in the same color c.
All three are colored by one call each of the study's coloring with identically seeded
generators, so image i of each set has the same background and noise draws: x - x_cf is the
color change alone, x - x_alt the digit change alone (and the background the strokes uncover).

Luminance control. A hue-blind layer (RGB weights equal) sees only the channel mean
(R + G + B) / 3 of a pixel, so recoloring a stroke changes what it sees by the change of that
intensity against the grey background. c' is therefore a color of EQUAL channel-mean intensity:
the study's palette falls into such groups exactly ({red, green, blue}: 85, {yellow, magenta,
cyan}: 170, {orange, violet}: 127.7, {brown, forest green}: 75.7), so every color has a partner.
(Another palette gets the nearest intensity; the mean gap is reported.) Matching the palette's
own colors, instead of rescaling them to a common luminance, keeps the stimuli colored as the
models were trained; it leaves a hue-blind network only the noise clipped at 0 and 255 to see.

Measures, per layer (the exposed conv output, before its ReLU):
  probe       held-out accuracy of ridge classifiers (`ridge_probe`) decoding the stroke color
              and the digit from pooled activations (per channel: mean, max, and the means of a
              grid x grid partition of the map); k-fold cross-validation over the images, so the
              probe is tested on digit images it never saw. Chance 0.1.
  invariance  per channel, E||h(x) - h(x_cf)||^2 / E||h(x) - h(x_alt)||^2 over the whole map:
              how far the channel moves when only the color changes, relative to how far it
              moves when only the digit changes; the layer's ratio sums both over channels.
  causal      the share of predictions that change when a channel's activation of x is replaced
              by that of x_cf (activation patching through the model's `perturbations`
              collection), per channel and for the whole layer. In a sequential network
              patching a whole layer is the same as feeding x_cf (every later layer is computed
              from it), so the whole-layer share equals `input_swap`; the per-channel shares say
              where the color the model uses is carried.

Null: the same numbers for `null_inits` random initializations of the architecture, and for a
hue-blind copy of the model (`hue_blind`: the first conv's RGB weights replaced by their mean
over the input channels). A channel is called 'color' only when its invariance ratio lies above
the random inits' 97.5th percentile of channel ratios of that layer, 'shape' only when below
their 2.5th percentile (a null channel is called one or the other with probability 5%, each
call lies beyond the 95th percentile of its own direction), else 'mixed'; 'dead' when its
pre-ReLU output never exceeds 0 on x. A channel "carries used color" when its causal share lies
above the random inits' 95th percentile of channel shares. The random inits' own class fractions
(`fractions_null`) are leave-one-init-out: each init classified against the other inits' range.
A channel that moves with color while no digit change moves it (digit energy 0, color energy > 0)
has an infinite ratio and is called 'color'; one that neither moves is 'dead'.

Selectivity (`selectivity`, `selectivity_counts`, `channel_selectivity`): the report's three
calls of a live channel, from its invariance ratio r beside the random inits' channel ratios of
the same layer (lo, hi: their 2.5th and 97.5th percentiles at the default quantile 0.975):
  color-selective  r > hi: recoloring moves it, relative to a change of digit, more than it
                   moves all but 2.5% of random channels;
  shape-selective  r < lo: recoloring moves it, relative to a change of digit, less than it
                   moves all but 2.5% of random channels (a channel blind to color and driven
                   by the digit has r near 0);
  neither          lo <= r <= hi ('mixed'), or dead.
The ratio is scale-free (a trained net's larger activations cancel), so trained channels and
random ones compare directly, and it carries both factors at once: a shape call says that per
unit of movement with the digit, recoloring moves the channel less than it moves random ones.
The positive control is a model trained on grey digits and measured on the same colored stimuli
as the others: its first conv's RGB weights receive equal gradients, so only their random-init
differences see hue.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist import models
from ccmnist.data import coloring
from ccmnist.data import palette as palette_lib
from ccmnist.interpret import gradcam as gradcam_lib
from ccmnist.util import batches
from ccmnist.util import io

CLASSES = ("color", "shape", "mixed", "dead")
SELECTIVITY = ("color", "shape", "neither")
SET_NAMES = ("x", "x_cf", "x_alt")


# ---------------------------------------------------------------- stimuli

def channel_intensity(palette) -> np.ndarray:
  """float64[n]: each of the palette's n colors' channel mean (R + G + B) / 3, what a hue-blind
  layer sees."""
  return palette_lib.check_palette(palette).astype(np.float64).mean(axis=1)


def intensity_partners(palette, *, tol: float = 0.5) -> list:
  """For each color, the other colors of (nearest) equal channel-mean intensity: n arrays.

  Colors within `tol` pixel levels of the nearest other color's intensity count as ties.
  """
  inten = channel_intensity(palette)
  out = []
  for c in range(len(inten)):
    gap = np.abs(inten - inten[c])
    gap[c] = np.inf
    out.append(np.flatnonzero(gap <= gap.min() + tol))
  return out


def balanced_indices(labels, num: int, rng: np.random.Generator, *,
                     num_classes: int) -> np.ndarray:
  """num // num_classes distinct random examples of each class, shuffled:
  int[num_classes * (num // num_classes)]."""
  labels = np.asarray(labels)
  per = num // num_classes
  if per < 1:
    raise ValueError(f"num_images={num}: need at least {num_classes} (one per class).")
  out = []
  for d in range(num_classes):
    idx = np.flatnonzero(labels == d)
    if len(idx) < per:
      raise ValueError(f"only {len(idx)} examples of digit {d}; lower num_images (asked "
                       f"{num}, {per} per digit).")
    out.append(rng.choice(idx, per, replace=False))
  return rng.permutation(np.concatenate(out))


def counterfactual_stimuli(grey, labels, *, num: int, num_classes: int, seed: int = 0,
                           palette=palette_lib.PALETTE_RGB, **color_kwargs) -> dict:
  """x, its recolored twin x_cf and its other-digit twin x_alt (see the module docstring), of
  num_classes classes (the data's) in the palette's colors.

  Returns 'x', 'x_cf', 'x_alt' uint8[n, H, W, 3]; 'labels', 'colors', 'cf_colors',
  'alt_labels' int32[n]; 'indices', 'alt_indices' into `grey`; 'intensity_gap_mean' (mean
  |intensity(c) - intensity(c')|, in pixel levels: 0 for the study's palette).
  """
  rng = np.random.default_rng([seed, 0])
  labels = np.asarray(labels)
  idx = balanced_indices(labels, num, rng, num_classes=num_classes)
  y = labels[idx].astype(np.int32)
  colors = rng.integers(0, len(palette), len(idx)).astype(np.int32)
  partners = intensity_partners(palette)
  cf = np.array([rng.choice(partners[c]) for c in colors], np.int32)
  # x_alt: another image of the stimulus set, of a different class, drawn per image.
  alt = np.array([rng.choice(np.flatnonzero(y != d)) for d in y])
  inten = channel_intensity(palette)
  kw = dict(palette=palette, **color_kwargs)
  g = np.asarray(grey)[idx]
  make = lambda digits, cols: coloring.colorize(digits, cols, np.random.default_rng([seed, 1]),
                                                **kw)
  return {"x": make(g, colors), "x_cf": make(g, cf), "x_alt": make(g[alt], colors),
          "labels": y, "colors": colors, "cf_colors": cf, "alt_labels": y[alt],
          "indices": idx, "alt_indices": idx[alt],
          "intensity_gap_mean": float(np.abs(inten[colors] - inten[cf]).mean())}


def hue_blind(params, *, module: str | None = None):
  """A copy of `params` whose first conv sees only intensity: its kernel [k, k, 3, O] replaced
  by the mean over the 3 input channels, repeated on each. `module`: the conv's params key
  (default: the only top-level module with a kernel of 3 input channels)."""
  if module is None:
    firsts = [k for k, v in params.items() if isinstance(v, dict) and "kernel" in v
              and v["kernel"].ndim == 4 and v["kernel"].shape[2] == 3]
    if len(firsts) != 1:
      raise ValueError(f"hue_blind needs one conv with 3 input channels; found {firsts}. "
                       "Name it with module=.")
    module = firsts[0]
  kernel = params[module]["kernel"]
  if kernel.ndim != 4 or kernel.shape[2] != 3:
    raise ValueError(f"params[{module!r}]['kernel'] has shape {kernel.shape}; hue_blind needs "
                     "a conv kernel [k, k, 3, out].")
  blind = jnp.broadcast_to(kernel.mean(axis=2, keepdims=True), kernel.shape)
  return {**params, module: {**params[module], "kernel": blind}}


# ---------------------------------------------------------------- activations

@functools.partial(jax.jit, static_argnames=("model", "layers"))
def _activations(model, params, images, *, layers):
  logits, state = model.apply({"params": params}, images.astype(jnp.float32),
                              mutable=["intermediates"])
  return {layer: state["intermediates"][layer][0] for layer in layers}, logits.argmax(-1)


def activations(model, params, images, *, layers, batch_size: int = 250):
  """({layer: float32[N, h, w, C]}, predictions int[N]): the exposed (pre-ReLU) activations
  of `images` and the model's predicted classes."""
  for layer in layers:
    gradcam_lib.check_layer(model, layer, np.shape(images)[1:])
  return batches.map_batches(
      lambda b: _activations(model, params, jnp.asarray(b), layers=tuple(layers)),
      (np.asarray(images),), batch_size=batch_size)


def pooled_features(acts_NHWC, *, grid: int = 2) -> np.ndarray:
  """float64[N, C * (2 + grid^2)]: per channel the spatial mean, the max and the mean of each
  cell of a grid x grid partition of the map (cells as equal as the size allows)."""
  a = np.asarray(acts_NHWC, np.float64)
  rows = np.array_split(np.arange(a.shape[1]), grid)
  cols = np.array_split(np.arange(a.shape[2]), grid)
  cells = [a[:, r][:, :, c].mean(axis=(1, 2)) for r in rows for c in cols]
  return np.concatenate([a.mean(axis=(1, 2)), a.max(axis=(1, 2))] + cells, axis=1)


# ---------------------------------------------------------------- probes

def folds_of(n: int, k: int, seed: int) -> np.ndarray:
  """int[n]: a random fold id in [0, k) per example, fold sizes differing by at most 1."""
  if not 2 <= k <= n:
    raise ValueError(f"cross-validation needs 2 <= folds <= examples; got {k} folds, {n} "
                     "examples.")
  return np.random.default_rng(seed).permutation(np.arange(n) % k)


def ridge_fit_predict(x_train, y_train, x_test, *, alpha: float,
                      num_classes: int) -> np.ndarray:
  """Ridge classifier: standardized features, one-hot targets, argmax of the linear fit.

  W = (X'X + alpha n I)^-1 X'Y on features standardized with the training set's mean and std
  (constant features dropped) and centered one-hot targets Y; predictions int[n_test].
  """
  xtr, xte = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
  mu, sd = xtr.mean(0), xtr.std(0)
  keep = sd > 1e-12 * (1.0 + np.abs(mu))
  xtr, xte = (xtr[:, keep] - mu[keep]) / sd[keep], (xte[:, keep] - mu[keep]) / sd[keep]
  y = np.eye(num_classes)[np.asarray(y_train)]
  y_mean = y.mean(0)
  gram = xtr.T @ xtr + alpha * len(xtr) * np.eye(xtr.shape[1])
  w = np.linalg.solve(gram, xtr.T @ (y - y_mean)) if xtr.shape[1] else np.zeros((0, num_classes))
  return np.argmax(xte @ w + y_mean, axis=1)


def ridge_probe(features, targets, folds, *, num_classes: int, alpha: float = 1e-2) -> float:
  """Cross-validated accuracy: each fold predicted by a probe fit on the other folds."""
  features, targets, folds = np.asarray(features), np.asarray(targets), np.asarray(folds)
  pred = np.empty(len(targets), np.int64)
  for f in np.unique(folds):
    test = folds == f
    pred[test] = ridge_fit_predict(features[~test], targets[~test], features[test],
                                   alpha=alpha, num_classes=num_classes)
  return float(np.mean(pred == targets))


# ---------------------------------------------------------------- invariance

def invariance(h_x, h_cf, h_alt) -> dict:
  """Per channel (last axis): 'color_energy' = mean over images of sum over positions of
  (h(x) - h(x_cf))^2, 'digit_energy' the same for x_alt, and their 'ratio' (NaN where the
  digit energy is 0 and the color energy too, inf where only the digit energy is 0);
  'layer_ratio' = sum of color energies / sum of digit energies."""
  h_x, h_cf, h_alt = (np.asarray(h, np.float64) for h in (h_x, h_cf, h_alt))
  axes = tuple(range(h_x.ndim - 1))
  num = ((h_x - h_cf) ** 2).sum(axis=axes) / len(h_x)
  den = ((h_x - h_alt) ** 2).sum(axis=axes) / len(h_x)
  with np.errstate(invalid="ignore", divide="ignore"):
    ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0),
                     np.where(num > 0, np.inf, np.nan))
  return {"color_energy": num, "digit_energy": den, "ratio": ratio,
          "layer_ratio": float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")}


def classify(ratio, max_act, lo: float, hi: float) -> np.ndarray:
  """'color' above hi (an infinite ratio included), 'shape' below lo, else 'mixed'; 'dead'
  where max_act <= 0 or the ratio is undefined (NaN)."""
  ratio, max_act = np.asarray(ratio, np.float64), np.asarray(max_act)
  out = np.full(ratio.shape, "mixed", dtype=object)
  with np.errstate(invalid="ignore"):
    out[ratio > hi] = "color"
    out[ratio < lo] = "shape"
  out[~(max_act > 0) | np.isnan(ratio)] = "dead"
  return out.astype(str)


def fractions(classes) -> dict:
  """{class: fraction of channels} over CLASSES."""
  classes = np.asarray(classes)
  return {c: float(np.mean(classes == c)) for c in CLASSES}


def selectivity(classes) -> np.ndarray:
  """The module docstring's three calls of `classify`'s classes: 'color' and 'shape' as called,
  'neither' for 'mixed' and 'dead'."""
  classes = np.asarray(classes)
  return np.where(np.isin(classes, ("color", "shape")), classes, "neither").astype(str)


def selectivity_counts(classes) -> dict:
  """{'color', 'shape', 'neither': number of channels so called, 'channels': their total}."""
  calls = selectivity(classes)
  return {**{c: int(np.sum(calls == c)) for c in SELECTIVITY}, "channels": int(calls.size)}


def channel_selectivity(h_x, h_cf, h_alt, null_ratios, *, quantile: float = 0.975):
  """Each channel's call (module docstring) from its activations on x, x_cf and x_alt
  ([..., C], channels last) beside `null_ratios`, the invariance ratios of random channels of
  the same layer (non-finite values ignored): str[C] of SELECTIVITY."""
  null = np.asarray(null_ratios, np.float64).ravel()
  null = null[np.isfinite(null)]
  if null.size < 2:
    raise ValueError(f"null_ratios holds {null.size} finite ratios; a null needs at least 2.")
  lo, hi = np.quantile(null, 1 - quantile), np.quantile(null, quantile)
  h_x = np.asarray(h_x, np.float64)
  max_act = h_x.reshape(-1, h_x.shape[-1]).max(axis=0)
  return selectivity(classify(invariance(h_x, h_cf, h_alt)["ratio"], max_act, lo, hi))


# ---------------------------------------------------------------- causal patching

@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _patched_predictions(model, params, x, x_cf, *, layer):
  """(pred on x [B], preds [B, C + 1]): column k < C with channel k of `layer` patched from
  x_cf, column C with the whole layer patched."""
  x, x_cf = x.astype(jnp.float32), x_cf.astype(jnp.float32)
  logits, state = model.apply({"params": params}, x, mutable=["intermediates"])
  _, state_cf = model.apply({"params": params}, x_cf, mutable=["intermediates"])
  delta = state_cf["intermediates"][layer][0] - state["intermediates"][layer][0]
  zeros = gradcam_lib.zero_perturbations(model, params, x)
  c = delta.shape[-1]

  def patched(mask):
    pert = {**zeros, layer: delta * mask}
    return model.apply({"params": params, "perturbations": pert}, x).argmax(-1)

  masks = jnp.concatenate([jnp.eye(c, dtype=delta.dtype), jnp.ones((1, c), delta.dtype)])
  return logits.argmax(-1), jax.lax.map(patched, masks).T


def causal_shares(model, params, x, x_cf, cf_colors, *, layer: str,
                  batch_size: int = 250) -> dict:
  """Share of predictions changed by patching `layer` of x from x_cf (module docstring).

  Returns 'channel' float64[C] (one channel patched at a time), 'layer' (all its channels)
  and 'to_cf_color' (all channels patched: the share now predicting c', the digit whose cue
  color x_cf carries).
  """
  gradcam_lib.check_layer(model, layer, np.shape(x)[1:])
  base, patched = batches.map_batches(
      lambda a, b: _patched_predictions(model, params, jnp.asarray(a), jnp.asarray(b),
                                        layer=layer),
      (np.asarray(x), np.asarray(x_cf)), batch_size=min(batch_size, len(x)))
  changed = patched != base[:, None]
  return {"channel": changed[:, :-1].mean(axis=0).astype(np.float64),
          "layer": float(changed[:, -1].mean()),
          "to_cf_color": float(np.mean(patched[:, -1] == np.asarray(cf_colors)))}


# ---------------------------------------------------------------- one network, its null

def network_measures(model, params, stim, *, layers, num_causal: int, folds, alpha: float,
                     grid: int, num_classes: int, num_colors: int,
                     batch_size: int = 250) -> dict:
  """Raw measures of one network on one stimulus set: {layer: {'probe', 'color_energy',
  'digit_energy', 'ratio', 'layer_ratio', 'max_act', 'causal'}} and 'input_swap' (share of
  predictions changed by feeding x_cf instead of x, and the share now predicting c')."""
  layers = tuple(layers)
  acts, preds = {}, {}
  for s in SET_NAMES:
    acts[s], preds[s] = activations(model, params, stim[s], layers=layers,
                                    batch_size=batch_size)
  m = min(num_causal, len(stim["x"]))
  out = {"input_swap": {"changed": float(np.mean(preds["x"] != preds["x_cf"])),
                        "to_cf_color": float(np.mean(preds["x_cf"] == stim["cf_colors"]))}}
  for layer in layers:
    feats = pooled_features(acts["x"][layer], grid=grid)
    out[layer] = {
        "probe": {"color": ridge_probe(feats, stim["colors"], folds, alpha=alpha,
                                       num_classes=num_colors),
                  "digit": ridge_probe(feats, stim["labels"], folds, alpha=alpha,
                                       num_classes=num_classes)},
        **invariance(acts["x"][layer], acts["x_cf"][layer], acts["x_alt"][layer]),
        "max_act": acts["x"][layer].max(axis=(0, 1, 2)),
        "causal": causal_shares(model, params, stim["x"][:m], stim["x_cf"][:m],
                                stim["cf_colors"][:m], layer=layer, batch_size=batch_size)}
  return out


def random_params(model, *, inits: int, seed: int, image_shape) -> list:
  """`inits` random initializations of `model` for images of image_shape (keys seed, seed + 1,
  ...)."""
  if inits < 2:
    raise ValueError(f"null_inits={inits}: a null needs at least 2 random initializations.")
  return [models.init_params(model, jax.random.key(seed + i), image_shape)
          for i in range(inits)]


def null_summary(values) -> dict:
  """{'mean', 'std', 'p95', 'min', 'max', 'values'} of the finite values (None if none)."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  if not v.size:
    return {"mean": None, "std": None, "p95": None, "min": None, "max": None, "values": []}
  return {"mean": float(v.mean()), "std": float(v.std()), "p95": float(np.quantile(v, 0.95)),
          "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}


def _live(r):
  return (np.asarray(r["max_act"]) > 0) & np.isfinite(r["ratio"])


def ratio_range(nulls, layer: str, *, quantile: float = 0.975):
  """(lo, hi): the (1 - quantile, quantile) quantiles of the live channel ratios of `layer`
  pooled over the null networks."""
  pooled = np.concatenate([np.asarray(r[layer]["ratio"])[_live(r[layer])] for r in nulls])
  if not pooled.size:
    raise ValueError(f"the null networks have no live channel in {layer}.")
  return float(np.quantile(pooled, 1 - quantile)), float(np.quantile(pooled, quantile))


def causal_threshold(nulls, layer: str, *, quantile: float = 0.95) -> float:
  """The `quantile` of the per-channel causal shares of `layer` pooled over the null nets."""
  return float(np.quantile(np.concatenate([r[layer]["causal"]["channel"] for r in nulls]),
                           quantile))


def _calls(r, layer, lo, hi, causal_thr):
  """(classes, fractions, share of channels above the causal threshold) of one network."""
  classes = classify(r[layer]["ratio"], r[layer]["max_act"], lo, hi)
  return classes, fractions(classes), float(np.mean(r[layer]["causal"]["channel"] > causal_thr))


def _leave_one_out(nulls, layer, *, quantile, causal_quantile):
  """The random inits' own calls, each against the range of the others: mean fractions."""
  fr, above = [], []
  for i, r in enumerate(nulls):
    rest = nulls[:i] + nulls[i + 1:]
    lo, hi = ratio_range(rest, layer, quantile=quantile)
    _, f, a = _calls(r, layer, lo, hi, causal_threshold(rest, layer, quantile=causal_quantile))
    fr.append(f)
    above.append(a)
  return {c: float(np.mean([f[c] for f in fr])) for c in CLASSES}, float(np.mean(above))


def summarize(measures, nulls, blind, *, layers, quantile: float = 0.975,
              causal_quantile: float = 0.95) -> dict:
  """The JSON summary of one model's measures beside its null (see the module docstring).

  measures, blind: network_measures of the model and of its hue-blind copy; nulls: a list of
  network_measures of random inits. Every measure key K has its null under K + '_null':
  {'random': summary over the inits, 'hue_blind': the hue-blind copy's value}; 'selectivity'
  counts each layer's channels per call, its null the inits' leave-one-out shares of channels
  called color and shape and the hue-blind copy's counts. JSON-safe:
  undefined values (a channel constant on the stimuli) are None.
  """
  out = {"input_swap": measures["input_swap"], "input_swap_null": {
      "random": {k: null_summary([r["input_swap"][k] for r in nulls])
                 for k in measures["input_swap"]},
      "hue_blind": blind["input_swap"]}, "layers": {}}
  for layer in layers:
    m, b = measures[layer], blind[layer]
    lo, hi = ratio_range(nulls, layer, quantile=quantile)
    thr = causal_threshold(nulls, layer, quantile=causal_quantile)
    classes, frac, above = _calls(measures, layer, lo, hi, thr)
    _, blind_frac, blind_above = _calls(blind, layer, lo, hi, thr)
    null_frac, null_above = _leave_one_out(nulls, layer, quantile=quantile,
                                           causal_quantile=causal_quantile)
    ch = m["causal"]["channel"]
    out["layers"][layer] = {
        "probe": dict(m["probe"]),
        "probe_null": {"random": {k: null_summary([r[layer]["probe"][k] for r in nulls])
                                  for k in m["probe"]}, "hue_blind": dict(b["probe"])},
        "invariance": {"ratio": m["layer_ratio"], "channel_ratio": m["ratio"].tolist(),
                       "classes": classes.tolist(), "fractions": frac},
        "selectivity": selectivity_counts(classes),
        "selectivity_null": {"random": {c: null_frac[c] for c in ("color", "shape")},
                             "hue_blind": selectivity_counts(
                                 classify(b["ratio"], b["max_act"], lo, hi))},
        "invariance_null": {
            "random": {"ratio": null_summary([r[layer]["layer_ratio"] for r in nulls]),
                       "channel_ratio_lo": lo, "channel_ratio_hi": hi, "quantile": quantile,
                       "fractions": null_frac},
            "hue_blind": {"ratio": b["layer_ratio"], "fractions": blind_frac}},
        "causal": {"layer": m["causal"]["layer"], "channel": ch.tolist(),
                   "max_channel": float(ch.max()), "mean_channel": float(ch.mean()),
                   "channels_above_null": above},
        "causal_null": {
            "random": {"layer": null_summary([r[layer]["causal"]["layer"] for r in nulls]),
                       "max_channel": null_summary([r[layer]["causal"]["channel"].max()
                                                    for r in nulls]),
                       "channel_threshold": thr, "quantile": causal_quantile,
                       "channels_above_null": null_above},
            "hue_blind": {"layer": b["causal"]["layer"],
                          "max_channel": float(b["causal"]["channel"].max()),
                          "channels_above_null": blind_above}}}
  return io.finite_or_none(out)
