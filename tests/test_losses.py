"""Losses against closed forms on a linear model, and the CheaterCNN's size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ccmnist import models
from ccmnist.train import losses

N, H, W, C = 3, 2, 2, 3
D = H * W * C


@pytest.fixture(name="linear")
def fixture_linear():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(D, 10)), jnp.float32)
  x = jnp.asarray(rng.uniform(0, 255, size=(N, H, W, C)), jnp.float32)
  y = jnp.asarray([2, 7, 2], jnp.int32)
  return w, x, y


def logit_fn_of(w):
  return lambda x: x.reshape(x.shape[0], -1) @ w


def test_cheater_param_count():
  model = models.get_model("cheater", num_classes=10)
  # no compile:
  params = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), (28, 28, 3)))
  assert models.param_count(params) == 15_338


def test_cross_entropy_hand_computed():
  logits = jnp.asarray([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
  labels = jnp.asarray([1, 0])
  lse = np.log(np.exp([1, 2, 0]).sum()), np.log(np.exp([0, 0, 3]).sum())
  want = np.asarray([lse[0] - 2.0, lse[1] - 0.0])
  got = losses.cross_entropy(logits=logits, labels=labels, reduction="none")
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits=logits, labels=labels), want.mean(),
                             rtol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits=logits, labels=labels,
                                                  reduction="sum"), want.sum(), rtol=1e-6)


@pytest.mark.parametrize("scale,factor", [("unit", 255.0), ("pixel", 1.0)])
def test_input_gradient_is_column_of_w(linear, scale, factor):
  w, x, y = linear
  g = losses.correct_logit_input_grad(logit_fn=logit_fn_of(w), images=x, labels=y, scale=scale)
  want = np.stack([np.asarray(w)[:, int(k)] for k in y]).reshape(N, H, W, C) * factor
  np.testing.assert_allclose(g, want, rtol=1e-6)


@pytest.mark.parametrize("scale,factor", [("unit", 255.0), ("pixel", 1.0)])
def test_gradient_penalty_closed_form(linear, scale, factor):
  w, x, y = linear
  wn = np.asarray(w, np.float64)
  per_example = np.asarray([np.mean((factor * wn[:, k]) ** 2) for k in np.asarray(y)])
  got = losses.input_gradient_penalty(logit_fn=logit_fn_of(w), images=x, labels=y, scale=scale,
                                      reduction="none")
  np.testing.assert_allclose(got, per_example, rtol=1e-5)
  got_mean = losses.input_gradient_penalty(logit_fn=logit_fn_of(w), images=x, labels=y,
                                           scale=scale)
  np.testing.assert_allclose(got_mean, per_example.mean(), rtol=1e-5)


def test_color_gradient_penalty_closed_form(linear):
  w, x, y = linear
  wn = np.asarray(w, np.float64)
  per_example = []
  for k in np.asarray(y):
    g = (255.0 * wn[:, k]).reshape(H, W, C)
    chroma = g - g.mean(-1, keepdims=True)
    per_example.append(np.mean(chroma ** 2))
  got = losses.color_gradient_penalty(logit_fn=logit_fn_of(w), images=x, labels=y,
                                      reduction="none")
  np.testing.assert_allclose(got, per_example, rtol=1e-5)


def test_penalty_gradient_wrt_weights_closed_form(linear):
  """Double backprop: d/dW of mean_i mean_k (255 W[k, y_i])^2 = 2 * 255^2 * count_c W / (n D)."""
  w, x, y = linear
  grad = jax.grad(lambda w_: losses.input_gradient_penalty(
      logit_fn=logit_fn_of(w_), images=x, labels=y))(w)
  counts = np.bincount(np.asarray(y), minlength=10)
  want = 2 * 255.0 ** 2 * np.asarray(w) * counts[None, :] / (N * D)
  np.testing.assert_allclose(grad, want, rtol=1e-4)


def test_color_penalty_ignores_grey_gradient():
  """A model that sees only the channel mean (grey level) has zero color penalty."""
  rng = np.random.default_rng(1)
  v = jnp.asarray(rng.normal(size=(H * W, 10)), jnp.float32)

  def logit_fn(x):
    return x.mean(-1).reshape(x.shape[0], -1) @ v

  x = jnp.asarray(rng.uniform(0, 255, size=(N, H, W, C)), jnp.float32)
  y = jnp.asarray([0, 1, 2])
  assert float(losses.color_gradient_penalty(logit_fn=logit_fn, images=x, labels=y)) < 1e-6
  assert float(losses.input_gradient_penalty(logit_fn=logit_fn, images=x, labels=y)) > 1.0


def test_chromatic_part_removes_channel_mean():
  rng = np.random.default_rng(2)
  g = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  out = np.asarray(losses.chromatic_part(jnp.asarray(g)))
  np.testing.assert_allclose(out, g - g.mean(-1, keepdims=True), atol=1e-6)
  np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-6)
  grey = np.repeat(g[..., :1], 3, axis=-1)
  np.testing.assert_allclose(losses.chromatic_part(jnp.asarray(grey)), 0.0, atol=1e-6)


def test_consistency():
  a = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])
  assert float(losses.consistency(logits=a, cf_logits=a)) == 0.0
  b = a + jnp.asarray([[1.0, 3.0], [0.0, 2.0]])
  np.testing.assert_allclose(losses.consistency(logits=a, cf_logits=b, reduction="none"),
                             [(1 + 9) / 2, (0 + 4) / 2])
  np.testing.assert_allclose(losses.consistency(logits=a, cf_logits=b), 3.5)


def test_bad_names_raise(linear):
  w, x, y = linear
  with pytest.raises(ValueError, match="reduction"):
    losses.consistency(logits=x, cf_logits=x, reduction="avg")
  with pytest.raises(ValueError, match="gradient scale"):
    losses.correct_logit_input_grad(logit_fn=logit_fn_of(w), images=x, labels=y, scale="01")
