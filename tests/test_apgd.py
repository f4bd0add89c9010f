"""APGD: the ball and the box, eps 0, the closed-form optimum of a linear model, the DLR losses
on hand-built logits, the checkpoint schedule, vmap over epsilons, and a trained model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ccmnist import models
from ccmnist.attacks import apgd as apgd_lib
from ccmnist.attacks import pgd as pgd_lib

D = 28 * 28 * 3


class Linear(nn.Module):
  """logits = x_flat @ W + b on pixels."""

  @nn.compact
  def __call__(self, x_NHWC):
    return nn.Dense(10)(x_NHWC.reshape(x_NHWC.shape[0], -1))


def two_class_params(key, *, label: int, other: int):
  """Only `other`'s logit depends on x (w . x); the rest are constants, `label`'s the highest.

  Then CE(label) = logsumexp(z) - z_label rises with w . x, and so does -CE(other): both
  attacks' optimum over the Linf ball around x0 (inside the box) is x0 + eps sign(w).
  """
  w = np.zeros((D, 10), np.float32)
  w[:, other] = 1e-3 * np.asarray(jax.random.normal(key, (D,)))
  b = np.full((10,), -3.0, np.float32)
  b[label] = 2.0
  return {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}


def images(key, n=5, lo=40.0, hi=215.0):
  return jax.random.uniform(key, (n, 28, 28, 3), jnp.float32, lo, hi)


# ---------------------------------------------------------------- losses

def test_dlr_equals_its_formula_on_hand_built_logits():
  z = jnp.array([[1.0, 5.0, 3.0, 2.0, 0.0, -1.0, 0.5, 4.0, -2.0, 0.25]])
  # Sorted: 5 (1), 4 (7), 3 (2), 2 (3), ...
  y = jnp.array([2])  # z_y = 3; the largest other is 5; z_pi1 - z_pi3 = 5 - 3.
  assert float(apgd_lib.dlr_loss(z, y)[0]) == pytest.approx(-(3.0 - 5.0) / (5.0 - 3.0))
  y = jnp.array([1])  # The label is the top class: the largest other is 4.
  assert float(apgd_lib.dlr_loss(z, y)[0]) == pytest.approx(-(5.0 - 4.0) / 2.0)
  # Targeted: -(z_s - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(5 - 0) / (5 - 2.5).
  got = apgd_lib.dlr_targeted_loss(z, jnp.array([4]), jnp.array([1]))
  assert float(got[0]) == pytest.approx(-5.0 / 2.5)
  # DLR is shift and scale invariant in the logits (why it is used).
  np.testing.assert_allclose(apgd_lib.dlr_loss(3.0 * z + 7.0, y), apgd_lib.dlr_loss(z, y),
                             rtol=1e-5)
  # The default source is the largest class other than the target.
  np.testing.assert_array_equal(apgd_lib.default_sources(z, jnp.array([1])), [7])
  np.testing.assert_array_equal(apgd_lib.default_sources(z, jnp.array([4])), [1])


def test_checkpoint_schedule_is_the_papers():
  # N = 100: w = 0, 22, 22 + max(22 - 3, 6) = 41, 41 + 16 = 57, 70, 80, 87, 93, 99.
  assert apgd_lib.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
  assert apgd_lib.checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
  assert apgd_lib.checkpoints(0) == []


# ---------------------------------------------------------------- properties

@pytest.mark.parametrize("loss,targeted", [("ce", False), ("dlr", False), ("dlr", True),
                                           ("ce", True)])
def test_stays_in_ball_and_box(loss, targeted):
  model = models.get_model("mlp", num_classes=10, conv_impl="patches")
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  x = jax.random.uniform(jax.random.key(1), (6, 28, 28, 3), jnp.float32, 0.0, 255.0)
  x = x.at[:2].set(0.0).at[2:4].set(255.0)  # Box edges too.
  y = jnp.array([0, 3, 5, 7, 9, 1])
  eps_N = jnp.array([8.0, 4.0, 8.0, 0.0, 16.0, 8.0])
  adv = apgd_lib.apgd(model, params, x, y, eps=eps_N, steps=6, loss=loss, targeted=targeted,
                      restarts=2, key=jax.random.key(3))
  d = np.abs(np.asarray(adv - x, np.float64)).reshape(6, -1).max(1)
  assert np.all(d <= np.asarray(eps_N) * (1 + 1e-5) + 1e-4)
  assert np.all(d[[4, 5]] > 0.5 * np.asarray(eps_N)[[4, 5]])  # Interior images did move.
  assert float(adv.min()) >= 0.0 and float(adv.max()) <= 255.0


@pytest.mark.parametrize("loss,targeted", [("ce", False), ("dlr", True)])
def test_eps_zero_is_identity(loss, targeted):
  model = Linear()
  params = two_class_params(jax.random.key(0), label=0, other=1)
  x = images(jax.random.key(1))
  y = jnp.full((5,), 1 if targeted else 0)
  adv = apgd_lib.apgd(model, params, x, y, eps=0.0, steps=5, loss=loss, targeted=targeted,
                      restarts=2, key=jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(adv), np.asarray(x))


@pytest.mark.parametrize("targeted", [False, True])
def test_linear_model_reaches_the_closed_form_optimum(targeted):
  """Label 0 stays predicted (the constant gap is wide), so no point succeeds and APGD returns
  its highest-loss point: the vertex x0 + eps sign(w) of the ball."""
  w_key = jax.random.key(4)
  params = two_class_params(w_key, label=0, other=1)
  x = images(jax.random.key(5))
  y = jnp.full((5,), 1 if targeted else 0)
  adv = apgd_lib.apgd(Linear(), params, x, y, eps=10.0, steps=20, loss="ce",
                      targeted=targeted, key=jax.random.key(6))
  w = np.asarray(params["Dense_0"]["kernel"][:, 1]).reshape(28, 28, 3)
  want = np.asarray(x) + 10.0 * np.sign(w)[None]
  np.testing.assert_allclose(np.asarray(adv), want, atol=1e-3)
  # The optimum's loss is no lower than PGD's (fixed step) on the same budget.
  pg = pgd_lib.pgd(Linear(), params, x, y, eps=10.0, step_size=1.0, steps=5, targeted=targeted,
                   key=jax.random.key(6))
  z = lambda a: np.asarray(Linear().apply({"params": params}, a))[:, 1]
  assert np.all(z(adv) >= z(pg) - 1e-4)


def test_vmaps_over_eps():
  model = Linear()
  params = two_class_params(jax.random.key(0), label=0, other=1)
  x, y = images(jax.random.key(1), 3), jnp.zeros(3, jnp.int32)
  eps = [0.0, 4.0, 10.0]
  out = apgd_lib.sweep(model, params, x, y, epsilons=eps, steps=4, key=jax.random.key(2))
  assert out.shape == (3, 3, 28, 28, 3)
  for e, adv in zip(eps, out):
    np.testing.assert_allclose(
        np.asarray(adv), np.asarray(apgd_lib.apgd(model, params, x, y, eps=e, steps=4,
                                                  key=jax.random.key(2))), atol=1e-4)


def test_bad_inputs_are_rejected():
  model, params = Linear(), two_class_params(jax.random.key(0), label=0, other=1)
  x, y, k = images(jax.random.key(1)), jnp.zeros(5, jnp.int32), jax.random.key(0)
  with pytest.raises(ValueError, match="APGD loss"):
    apgd_lib.apgd(model, params, x, y, eps=1.0, loss="margin", key=k)
  with pytest.raises(ValueError, match="restarts"):
    apgd_lib.apgd(model, params, x, y, eps=1.0, restarts=0, key=k)
  with pytest.raises(ValueError, match="eps must be >= 0"):
    apgd_lib.apgd(model, params, x, y, eps=-1.0, key=k)


# ---------------------------------------------------------------- a model that can be fooled

def test_beats_or_matches_pgd_on_a_random_mlp():
  """A random MLP: APGD (CE, 10 steps) misclassifies at least as many as PGD of the same steps,
  and restarts never lower its success."""
  model = models.get_model("mlp", num_classes=10, hidden=(32,))
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  x = images(jax.random.key(1), 8, 0.0, 255.0)
  y = jnp.argmax(model.apply({"params": params}, x), -1)  # Clean accuracy 1 by construction.
  miss = lambda a: np.asarray(jnp.argmax(model.apply({"params": params}, a), -1) != y)
  ap = apgd_lib.apgd(model, params, x, y, eps=2.0, steps=10, key=jax.random.key(2))
  pg = pgd_lib.pgd(model, params, x, y, eps=2.0, step_size=0.25, steps=10,
                   key=jax.random.key(2))
  assert miss(ap).mean() >= miss(pg).mean()
  ap3 = apgd_lib.apgd(model, params, x, y, eps=2.0, steps=10, restarts=3, key=jax.random.key(2))
  assert np.all(miss(ap3) >= miss(ap))  # Restart 0 uses the same key: never worse.
