"""Where a batch of perturbations lies, beside random perturbations of the same budget.

Measures of delta = adv - x (float64 on the host, no compiled program), with m the colored-stroke
mask of x (`stroke_mask`; in the study's foreground coloring the stroke, the only colored pixels):
  color_shift_share    the energy of the best fit delta ~ m (x) v_i, one RGB vector v_i per
                       image on the stroke and nothing elsewhere (least squares: v_i = the mean of
                       delta over the stroke), over the energy of delta: 1 for a pure recoloring
                       of the stroke, 0 for a perturbation off the stroke or zero-mean on it.
  stroke_energy_share  the share of the energy of delta on the stroke (stroke_pixel_share of
                       the pixels).
  chromatic_share      the share of the energy off the grey axis (deviation from each pixel's
                       channel mean); 2/3 for isotropic noise, and blind to where delta lies.
Batch values are energy-weighted (sums over the batch); '_median' values are per-image medians.

Null (`anatomy_with_null`): each measure K beside K_null, the same measure of random
perturbations of the same budget: random signs +-eps on every pixel and channel (an L-inf
budget's vertices, where PGD's sign steps end) or, for an L2 budget, a random direction of norm
eps, added to the same images and clipped to [0, 255] as the attack's are, so what the clipping
at the palette's saturated channels does is in the null too. Seeded: the same images give the
same null. `*_images_above_null_p95` is the share of images whose own value exceeds the null
images' 95th percentile; `null_description` says what the null was.
"""

import numpy as np

NORMS = ("linf", "l2")
# Measures compared with the null (the pixel share of the stroke depends only on the images).
NULL_KEYS = ("color_shift_share", "color_shift_share_median", "stroke_energy_share",
             "stroke_energy_share_median", "mean_abs_on_stroke", "mean_abs_off_stroke",
             "chromatic_share", "mean_linf", "mean_l2", "mean_abs")


def chromatic_energy(delta_NHWC):
  """Per-example sum (delta - mean_c delta)^2 and sum delta^2, float64 [N] each."""
  d = np.asarray(delta_NHWC, np.float64)
  chroma = d - d.mean(axis=-1, keepdims=True)
  axes = tuple(range(1, d.ndim))
  return np.sum(chroma ** 2, axis=axes), np.sum(d ** 2, axis=axes)


def stroke_mask(images_NHWC, *, threshold: float = 30.0):
  """Colored-stroke pixels, bool [N, H, W]: the largest channel deviation from the pixel's
  channel mean exceeds `threshold` (the study's backgrounds are grey, its palette saturated)."""
  x = np.asarray(images_NHWC, np.float64)
  return np.abs(x - x.mean(-1, keepdims=True)).max(-1) > threshold


def color_shift_fit(delta_NHWC, mask_NHW):
  """Least-squares fit delta ~ mask (x) v per image: (v [N, C], explained energy [N],
  total energy [N]). With weights w = mask, v = sum_p w_p delta_p / sum_p w_p^2 and the fit's
  energy is (sum_p w_p^2) |v|^2, which the residual's energy completes to the total."""
  d = np.asarray(delta_NHWC, np.float64)
  w = np.asarray(mask_NHW, np.float64)
  if w.shape != d.shape[:-1]:
    raise ValueError(f"mask shape {w.shape} does not match the perturbations {d.shape}.")
  ww = np.sum(w ** 2, axis=(1, 2))
  v = np.einsum("nhw,nhwc->nc", w, d) / np.maximum(ww, 1e-30)[:, None]
  return v, ww * np.sum(v ** 2, axis=1), np.sum(d ** 2, axis=(1, 2, 3))


def _ratio(a, b):
  return float(a / b) if b > 0 else float("nan")


def _median_ratio(a, b):
  ok = b > 0
  return float(np.median(a[ok] / b[ok])) if ok.any() else float("nan")


def per_image(delta_NHWC, mask_NHW) -> dict:
  """Per-image color-shift and stroke-energy shares, float64 [N] each (NaN where delta = 0)."""
  _, explained, total = color_shift_fit(delta_NHWC, mask_NHW)
  d = np.asarray(delta_NHWC, np.float64)
  on = np.sum(np.sum(d ** 2, axis=-1) * np.asarray(mask_NHW, bool), axis=(1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    return {"color_shift_share": np.where(total > 0, explained / total, np.nan),
            "stroke_energy_share": np.where(total > 0, on / total, np.nan)}


def perturbation_anatomy(delta_NHWC, mask_NHW=None) -> dict:
  """The measures of the module docstring for one batch (stroke measures need a mask)."""
  d = np.asarray(delta_NHWC, np.float64)
  chroma, total = chromatic_energy(d)
  out = {
      "mean_abs_map_HWC": np.abs(d).mean(axis=0),
      "chromatic_share": _ratio(chroma.sum(), total.sum()),
      "chromatic_share_median": _median_ratio(chroma, total),
      "isotropic_chromatic_share": 2.0 / 3.0,
      "mean_linf": float(np.abs(d).reshape(len(d), -1).max(axis=1).mean()),
      "mean_l2": float(np.sqrt(total).mean()),
      "mean_abs": float(np.abs(d).mean()),
  }
  if mask_NHW is not None:
    m = np.asarray(mask_NHW, bool)
    _, explained, _ = color_shift_fit(d, m)
    energy = np.sum(d ** 2, axis=-1)
    on = np.sum(energy * m, axis=(1, 2))
    a = np.abs(d).mean(-1)
    out.update({
        "color_shift_share": _ratio(explained.sum(), total.sum()),
        "color_shift_share_median": _median_ratio(explained, total),
        "stroke_pixel_share": float(m.mean()),
        "stroke_energy_share": _ratio(on.sum(), total.sum()),
        "stroke_energy_share_median": _median_ratio(on, total),
        "mean_abs_on_stroke": float(a[m].mean()) if m.any() else float("nan"),
        "mean_abs_off_stroke": float(a[~m].mean()) if (~m).any() else float("nan"),
    })
  return out


def random_perturbation(images_NHWC, *, eps: float, norm: str = "linf", seed: int = 0):
  """The null's perturbations: clip(x + r, 0, 255) - x, r random signs * eps (linf) or a
  random direction of L2 norm eps per image (l2); float64 like the images' shape."""
  if norm not in NORMS:
    raise ValueError(f"norm={norm!r}; use one of {NORMS}.")
  if not eps >= 0:
    raise ValueError(f"eps={eps}; use eps >= 0.")
  x = np.asarray(images_NHWC, np.float64)
  rng = np.random.default_rng([seed, 17])
  if norm == "linf":
    r = eps * rng.choice(np.array([-1.0, 1.0]), size=x.shape)
  else:
    r = rng.normal(size=x.shape)
    r *= eps / np.maximum(np.sqrt(np.sum(r ** 2, axis=(1, 2, 3), keepdims=True)), 1e-30)
  return np.clip(x + r, 0.0, 255.0) - x


def anatomy_with_null(images_NHWC, adv_NHWC, *, eps: float, norm: str = "linf",
                      seed: int = 0, threshold: float = 30.0) -> dict:
  """perturbation_anatomy of adv - images with the stroke mask of the images, and each of
  NULL_KEYS beside its value for random perturbations of the same budget (K_null)."""
  x = np.asarray(images_NHWC, np.float64)
  delta = np.asarray(adv_NHWC, np.float64) - x
  mask = stroke_mask(x, threshold=threshold)
  null_delta = random_perturbation(x, eps=eps, norm=norm, seed=seed)
  out = perturbation_anatomy(delta, mask)
  null = perturbation_anatomy(null_delta, mask)
  out.update({f"{k}_null": null[k] for k in NULL_KEYS})
  mine, theirs = per_image(delta, mask), per_image(null_delta, mask)
  for k in ("color_shift_share", "stroke_energy_share"):
    ok = np.isfinite(theirs[k])
    p95 = float(np.quantile(theirs[k][ok], 0.95)) if ok.any() else float("nan")
    out[f"{k}_null_p95"] = p95
    with np.errstate(invalid="ignore"):
      out[f"{k.replace('_share', '')}_images_above_null_p95"] = float(np.mean(mine[k] > p95))
  kind = "signs" if norm == "linf" else "directions"
  out.update({"null_description": f"random {kind} at eps {eps} ({norm}), clipped to [0, 255], "
                                  f"seed {seed}",
              "stroke_threshold": float(threshold)})
  return out
