"""Attribution maps: Grad-CAM (the study's), Grad-CAM++, input-gradient saliency, Integrated
Gradients; the activation-spread entropy; the model-randomization sanity check.

Images are NHWC float32 in pixel units [0, 255], as the models take them. Gradients with respect
to a conv activation come from the model's `perturb` collection: the exposed output of `layer`
(before its ReLU, as the study's hook on `features[4]` saw it) gets a zero perturbation, and the
gradient of the class score (the logit, before softmax) with respect to that zero is dscore/dA.

Every function here is one jitted program per (model, layer, setting, batch shape): the compiled
function is cached by `jax.jit` (model and settings are static arguments), so calling it again
on a batch of the same shape does not recompile.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist import models

EPS = 1e-8  # The study's epsilon in the min-max normalization.
IG_RULES = ("trapezoid", "left", "right", "midpoint")


# ---------------------------------------------------------------- activations and gradients

@functools.lru_cache(maxsize=64)
def exposed_layers(model, image_shape: tuple) -> dict:
  """{name: per-image shape} of every activation `model` exposes on images of image_shape
  (H, W, C) (cached per model and shape)."""
  image_shape = models.check_image_shape(image_shape)
  _, state = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), models.dummy_input(image_shape), mutable=["params", "intermediates"]))
  return {k: tuple(v[0].shape) for k, v in state["intermediates"].items()}


def check_layer(model, layer: str, image_shape) -> tuple:
  """The per-image shape of `layer`'s exposed activation on images of image_shape (H, W, C), or
  a ValueError naming the layers."""
  shapes = exposed_layers(model, tuple(int(d) for d in image_shape))
  if layer not in shapes:
    raise ValueError(f"Layer {layer!r} is not exposed by {type(model).__name__}; "
                     f"exposed layers: {', '.join(sorted(shapes))}.")
  return shapes[layer]


def zero_perturbations(model, params, images) -> dict:
  """Zeros for every exposed activation of `model` on this batch (flax's perturb needs all)."""
  _, state = jax.eval_shape(
      lambda: model.apply({"params": params}, images, mutable=["intermediates"]))
  return {k: jnp.zeros(v[0].shape, v[0].dtype) for k, v in state["intermediates"].items()}


def layer_activation_and_grad(model, params, images, targets, *, layer: str):
  """(A, dscore/dA, logits): the exposed activation of `layer` [N, h, w, C], the gradient of
  each image's target-class logit with respect to it, and the logits [N, classes].

  The batch's scores are summed before differentiating; images do not interact in the models,
  so each image's gradient is its own score's.
  """
  zeros = zero_perturbations(model, params, images)

  def score(pert):
    logits, state = model.apply({"params": params, "perturbations": pert}, images,
                                mutable=["intermediates"])
    s = jnp.take_along_axis(logits, targets[:, None], axis=1).sum()
    return s, (state["intermediates"][layer][0], logits)

  grads, (acts, logits) = jax.grad(score, has_aux=True)(zeros)
  return acts, grads[layer], logits


def minmax_normalize(maps_NHW, eps: float = EPS):
  """(m - min) / (max - min + eps) per map, as the study normalizes its Grad-CAM."""
  lo = maps_NHW.min(axis=(1, 2), keepdims=True)
  hi = maps_NHW.max(axis=(1, 2), keepdims=True)
  return (maps_NHW - lo) / (hi - lo + eps)


def upsample(maps_NHW, hw: tuple):
  """Bilinear resize to hw = (height, width), the images' (half-pixel centers, torch's
  align_corners=False)."""
  return jax.image.resize(maps_NHW, (maps_NHW.shape[0], *hw), method="bilinear")


# ---------------------------------------------------------------- Grad-CAM and Grad-CAM++

def _gradcam_weights(acts, grads, method):
  if method == "gradcam":
    return grads.mean(axis=(1, 2))  # alpha_k^c = mean_ij dy^c / dA^k_ij.
  if method == "gradcam++":
    # Chattopadhyay et al. (2018), with the usual closed form of the higher derivatives
    # (as in pytorch-grad-cam): alpha = g^2 / (2 g^2 + sum_ab A_ab g^3).
    g2, g3 = grads ** 2, grads ** 3
    sum_a = acts.sum(axis=(1, 2), keepdims=True)
    denom = 2.0 * g2 + sum_a * g3
    alpha = jnp.where(grads != 0.0, g2 / jnp.where(denom != 0.0, denom, 1.0), 0.0)
    return (alpha * jax.nn.relu(grads)).sum(axis=(1, 2))
  raise ValueError(f"Unknown CAM method {method!r}; use 'gradcam' or 'gradcam++'.")


@functools.partial(jax.jit, static_argnames=("model", "layer", "method", "normalize",
                                             "resize"))
def _cam(model, params, images, targets, *, layer, method, normalize, resize):
  acts, grads, _ = layer_activation_and_grad(model, params, images, targets, layer=layer)
  weights = _gradcam_weights(acts, grads, method)  # [N, C]
  cam = jax.nn.relu(jnp.einsum("nhwc,nc->nhw", acts, weights))
  if normalize:  # The study normalizes first, then upsamples.
    cam = minmax_normalize(cam)
  if resize:
    cam = upsample(cam, images.shape[1:3])
  return cam.astype(jnp.float32)


def _check_batch(images, targets, model=None, layer=None):
  images = jnp.asarray(images, jnp.float32)
  targets = jnp.asarray(targets, jnp.int32)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be NHWC [N, H, W, 3] pixel values; got {images.shape}.")
  if layer is not None:
    check_layer(model, layer, images.shape[1:])
  if targets.shape != images.shape[:1]:
    raise ValueError(f"need one target class per image: {targets.shape} vs {images.shape[:1]}.")
  return images, targets


def gradcam(model, params, images, targets, *, layer="conv2", normalize=True):
  """The study's Grad-CAM of the target classes: float32[N, H, W].

  alpha_k = mean over space of d(logit of target) / dA^k, with A = `layer`'s output before its
  ReLU (conv2, the third conv, is what the study hooks); map = ReLU(sum_k alpha_k A^k); then,
  in the study's order, min-max normalized per image with epsilon 1e-8 and bilinearly
  upsampled to the images' H x W. normalize=False skips the normalization (the raw ReLU'd map,
  upsampled).
  Images are NHWC pixel values in [0, 255]; targets int[N].
  """
  images, targets = _check_batch(images, targets, model, layer)
  return _cam(model, params, images, targets, layer=layer, method="gradcam",
              normalize=normalize, resize=True)


def gradcam_lowres(model, params, images, targets, *, layer="conv2", normalize=True):
  """Grad-CAM at the layer's own resolution, float32[N, h, w] (no upsampling)."""
  images, targets = _check_batch(images, targets, model, layer)
  return _cam(model, params, images, targets, layer=layer, method="gradcam",
              normalize=normalize, resize=False)


def gradcam_plus_plus(model, params, images, targets, *, layer="conv2", normalize=True):
  """Grad-CAM++ (Chattopadhyay et al. 2018), same conventions as `gradcam`: float32[N, H, W]."""
  images, targets = _check_batch(images, targets, model, layer)
  return _cam(model, params, images, targets, layer=layer, method="gradcam++",
              normalize=normalize, resize=True)


# ---------------------------------------------------------------- input gradients

def _target_logit_sum(model, params, images, targets):
  logits = model.apply({"params": params}, images)
  return jnp.take_along_axis(logits, targets[:, None], axis=1).sum()


@functools.partial(jax.jit, static_argnames=("model",))
def input_gradient(model, params, images, targets):
  """d(target logit) / d(pixel), float32[N, H, W, 3] (per unit of pixel value)."""
  return jax.grad(_target_logit_sum, argnums=2)(model, params, images, targets)


@functools.partial(jax.jit, static_argnames=("model", "normalize"))
def _saliency(model, params, images, targets, *, normalize):
  g = jax.grad(_target_logit_sum, argnums=2)(model, params, images, targets)
  sal = jnp.abs(g).max(axis=-1)
  return minmax_normalize(sal) if normalize else sal


def saliency(model, params, images, targets, *, normalize=True):
  """Vanilla gradient saliency (Simonyan et al.): max over RGB of |d logit / d pixel|,
  min-max normalized per image: float32[N, H, W]."""
  images, targets = _check_batch(images, targets)
  return _saliency(model, params, images, targets, normalize=normalize)


def _ig_nodes(steps: int, rule: str):
  """Interpolation points alpha_k in [0, 1] and quadrature weights (sum 1)."""
  if steps < 1:
    raise ValueError(f"Integrated Gradients needs steps >= 1; got {steps}.")
  k = np.arange(steps, dtype=np.float64)
  if rule == "trapezoid":
    alphas = np.linspace(0.0, 1.0, steps + 1)
    w = np.full(steps + 1, 1.0 / steps)
    w[0] = w[-1] = 0.5 / steps
    return alphas.astype(np.float32), w.astype(np.float32)
  if rule == "left":
    alphas = k / steps
  elif rule == "right":
    alphas = (k + 1) / steps
  elif rule == "midpoint":
    alphas = (k + 0.5) / steps
  else:
    raise ValueError(f"Unknown Integrated-Gradients rule {rule!r}; use one of {IG_RULES}.")
  return alphas.astype(np.float32), np.full(steps, 1.0 / steps, np.float32)


@functools.partial(jax.jit, static_argnames=("model", "steps", "rule"))
def _ig(model, params, images, targets, baseline, *, steps, rule):
  alphas, weights = _ig_nodes(steps, rule)
  delta = images - baseline

  def body(acc, aw):
    a, w = aw
    g = jax.grad(_target_logit_sum, argnums=2)(model, params, baseline + a * delta, targets)
    return acc + w * g, None

  avg_grad, _ = jax.lax.scan(body, jnp.zeros_like(images), (alphas, weights))
  return delta * avg_grad


def integrated_gradients(model, params, images, targets, *, baseline=None, steps=64,
                         rule="trapezoid"):
  """Integrated Gradients (Sundararajan et al. 2017) of the target logit: float32[N, H, W, 3].

  attribution = (x - x') * integral_0^1 d logit(x' + a (x - x')) / dx da, the integral by the
  quadrature `rule` ('trapezoid' default, or 'left' / 'right' / 'midpoint' Riemann sums) on
  `steps` intervals; the steps run in a lax.scan, so memory does not grow with `steps`.
  baseline: None = black (all-zero pixels), else an array broadcastable to the images.
  Attributions sum, per image, to about logit(x) - logit(x'): see `ig_completeness`.
  """
  images, targets = _check_batch(images, targets)
  baseline = jnp.zeros_like(images) if baseline is None else jnp.broadcast_to(
      jnp.asarray(baseline, jnp.float32), images.shape)
  return _ig(model, params, images, targets, baseline, steps=steps, rule=rule)


@functools.partial(jax.jit, static_argnames=("model",))
def target_logits(model, params, images, targets):
  logits = model.apply({"params": params}, images)
  return jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]


def ig_completeness(model, params, images, targets, attributions, *, baseline=None) -> dict:
  """How well attributions satisfy completeness: sum(attr) = f(x) - f(x').

  Returns numpy arrays per image: 'sum_attr', 'delta_f' (= f(x) - f(x'), f the target logit),
  'abs_error' = |sum_attr - delta_f| and 'rel_error' = abs_error / max(|delta_f|, 1e-6).
  """
  images, targets = _check_batch(images, targets)
  baseline = jnp.zeros_like(images) if baseline is None else jnp.broadcast_to(
      jnp.asarray(baseline, jnp.float32), images.shape)
  delta_f = np.asarray(target_logits(model, params, images, targets)
                       - target_logits(model, params, baseline, targets), np.float64)
  sum_attr = np.asarray(attributions, np.float64).reshape(len(delta_f), -1).sum(axis=1)
  err = np.abs(sum_attr - delta_f)
  return {"sum_attr": sum_attr, "delta_f": delta_f, "abs_error": err,
          "rel_error": err / np.maximum(np.abs(delta_f), 1e-6)}


# ---------------------------------------------------------------- activation spread

def map_entropy(maps_NHW, *, normalized=False) -> np.ndarray:
  """Shannon entropy (nats) of each map seen as a distribution over its pixels: float64[N].

  p = m / sum(m) over the map's H x W pixels (maps must be >= 0; Grad-CAM maps are), with
  0 log 0 = 0. High = diffuse, low = localized: the study's "activation spread". normalized=True
  divides by log(number of pixels), so 1 is a uniform map. An all-zero map has no distribution:
  its entropy is NaN (count those separately; see `spread_summary`).
  """
  m = np.asarray(maps_NHW, np.float64).reshape(len(maps_NHW), -1)
  if (m < 0).any():
    raise ValueError("map_entropy needs non-negative maps (e.g. ReLU'd Grad-CAM).")
  total = m.sum(axis=1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    p = m / total
    h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
  h = np.where(total[:, 0] > 0, h, np.nan)
  return h / np.log(m.shape[1]) if normalized else h


def spread_summary(maps_NHW) -> dict:
  """Mean/std entropy (nats and normalized by log 784) over maps, skipping all-zero maps."""
  h = map_entropy(maps_NHW)
  ok = np.isfinite(h)
  n_pix = np.prod(np.asarray(maps_NHW).shape[1:])
  mean = float(h[ok].mean()) if ok.any() else float("nan")
  return {"entropy_nats_mean": mean,
          "entropy_nats_std": float(h[ok].std()) if ok.any() else float("nan"),
          "entropy_normalized_mean": mean / float(np.log(n_pix)),
          "max_entropy_nats": float(np.log(n_pix)),
          "num_maps": int(len(h)), "num_all_zero": int((~ok).sum())}


# ---------------------------------------------------------------- sanity checks

def rankdata(x) -> np.ndarray:
  """Ranks 1..n of a 1-D array, ties given their average rank (as scipy.stats.rankdata)."""
  x = np.asarray(x).ravel()
  order = np.argsort(x, kind="mergesort")
  xs = x[order]
  # Boundaries of runs of equal values.
  new = np.concatenate([[True], xs[1:] != xs[:-1]])
  run_id = np.cumsum(new) - 1
  starts = np.flatnonzero(new)
  ends = np.concatenate([starts[1:], [len(xs)]])
  avg = (starts + ends - 1) / 2.0 + 1.0  # average of 1-based ranks start+1 .. end
  ranks = np.empty(len(x), np.float64)
  ranks[order] = avg[run_id]
  return ranks


def spearman(a, b) -> float:
  """Spearman rank correlation of two arrays (flattened); NaN if either is constant."""
  ra, rb = rankdata(a), rankdata(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
  return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def map_rank_correlations(maps_a, maps_b) -> np.ndarray:
  """Per-image Spearman correlation between two stacks of maps: float64[N]."""
  maps_a, maps_b = np.asarray(maps_a), np.asarray(maps_b)
  if maps_a.shape != maps_b.shape:
    raise ValueError(f"map stacks differ in shape: {maps_a.shape} vs {maps_b.shape}.")
  return np.array([spearman(a, b) for a, b in zip(maps_a, maps_b)])


METHODS = {
    "gradcam": lambda m, p, x, t, layer: gradcam(m, p, x, t, layer=layer),
    "gradcam++": lambda m, p, x, t, layer: gradcam_plus_plus(m, p, x, t, layer=layer),
    "saliency": lambda m, p, x, t, layer: saliency(m, p, x, t),
}


def randomization_check(model, params, random_params, images, targets, *, layer="conv2",
                        methods=("gradcam", "saliency")) -> dict:
  """Model-randomization test (Adebayo et al. 2018): maps of the trained model vs the same
  architecture re-initialized, for the same images and target classes.

  A method that explains the model must give different maps: a rank correlation near 1 means
  the maps mostly reflect the input, not what the model learned. Returns, per method,
  {'spearman_mean', 'spearman_median', 'abs_spearman_mean', 'num_nan'} over images (NaN where a
  map is constant, e.g. an all-zero Grad-CAM).
  """
  out = {}
  for name in methods:
    if name not in METHODS:
      raise ValueError(f"Unknown attribution method {name!r}; known: {', '.join(METHODS)}.")
    fn = METHODS[name]
    r = map_rank_correlations(fn(model, params, images, targets, layer),
                              fn(model, random_params, images, targets, layer))
    ok = np.isfinite(r)
    out[name] = {"spearman_mean": float(np.mean(r[ok])) if ok.any() else float("nan"),
                 "spearman_median": float(np.median(r[ok])) if ok.any() else float("nan"),
                 "abs_spearman_mean": float(np.mean(np.abs(r[ok]))) if ok.any() else float("nan"),
                 "num_images": int(len(r)), "num_nan": int((~ok).sum())}
  return out


def cascading_params(params, random_params, order):
  """Adebayo's cascading randomization: for i = 1..len(order), params with the first i
  top-level modules of `order` (e.g. ('Dense_0', 'Conv_2', 'Conv_1', 'Conv_0'), top layer
  first) replaced by their re-initialized values. Returns [(module name, params)]."""
  out, cur = [], dict(params)
  for name in order:
    if name not in params:
      raise ValueError(f"Unknown module {name!r}; params hold {', '.join(sorted(params))}.")
    cur = {**cur, name: random_params[name]}
    out.append((name, cur))
  return out
