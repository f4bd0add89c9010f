"""The pieces the methods' losses share: keyword-only pure functions (train/methods/ combines
them into each method's objective).

`logit_fn(x) -> logits` is the model applied to images in pixel units [0, 255]; penalties that
need an input gradient take it as an argument and differentiate through it (double backprop).
"""

import jax
import jax.numpy as jnp
import optax

REDUCTIONS = ("mean", "sum", "none")
# The study's model saw images in [0, 1]; ours sees [0, 255]. A gradient w.r.t. [0, 1] inputs
# is 255 times the gradient w.r.t. pixels, so 'unit' reproduces the study's penalty exactly.
GRAD_SCALES = {"unit": 255.0, "pixel": 1.0}


def _reduce(x, reduction):
  if reduction == "mean":
    return jnp.mean(x)
  if reduction == "sum":
    return jnp.sum(x)
  if reduction == "none":
    return x
  raise ValueError(f"Unknown reduction {reduction!r}; use one of {REDUCTIONS}.")


def cross_entropy(*, logits, labels, reduction="mean"):
  """Softmax cross-entropy with integer labels."""
  return _reduce(optax.softmax_cross_entropy_with_integer_labels(logits, labels), reduction)


def correct_logit_input_grad(*, logit_fn, images, labels, scale="unit"):
  """d logit_y / d x per example, for x in [0, 1] ('unit', the study's) or pixels ('pixel')."""
  if scale not in GRAD_SCALES:
    raise ValueError(f"Unknown gradient scale {scale!r}; use one of {tuple(GRAD_SCALES)}.")
  # Examples are independent, so the gradient of the summed correct logits is per example.
  f = lambda x: jnp.sum(jnp.take_along_axis(logit_fn(x), labels[:, None], axis=1))
  return jax.grad(f)(images) * GRAD_SCALES[scale]


def chromatic_part(g_NHWC):
  """The part of an RGB image (or gradient) that is not grey: minus the per-pixel channel mean."""
  return g_NHWC - jnp.mean(g_NHWC, axis=-1, keepdims=True)


def input_gradient_penalty(*, logit_fn, images, labels, scale="unit", reduction="mean"):
  """The study's penalty: mean over all N*H*W*C entries of (d logit_y / d x)^2.

  Unweighted: the caller multiplies by lambda. With reduction='none' returns [N] per-example
  means.
  """
  g = correct_logit_input_grad(logit_fn=logit_fn, images=images, labels=labels, scale=scale)
  return _reduce(jnp.mean(jnp.square(g), axis=(1, 2, 3)), reduction)


def color_gradient_penalty(*, logit_fn, images, labels, scale="unit", reduction="mean"):
  """Like input_gradient_penalty but only on the chromatic part of the gradient.

  The luminance part (the channel mean, what a grey-level shape detector uses) is left free.
  """
  g = correct_logit_input_grad(logit_fn=logit_fn, images=images, labels=labels, scale=scale)
  return _reduce(jnp.mean(jnp.square(chromatic_part(g)), axis=(1, 2, 3)), reduction)


def consistency(*, logits, cf_logits, reduction="mean"):
  """mean((f(x) - f(x_cf))^2) over logits and classes: the study's counterfactual term."""
  return _reduce(jnp.mean(jnp.square(logits - cf_logits), axis=-1), reduction)
