"""Square attack: no gradient asked, the ball and the box, its p schedule, and success on a
linear model whose decision a Linf step of eps can flip."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ccmnist.attacks import square as square_lib

D = 28 * 28 * 3


@jax.custom_vjp
def refuse_gradients(x):
  return x


def _fwd(x):
  return x, None


def _bwd(_, g):
  raise RuntimeError("a gradient was asked for")


refuse_gradients.defvjp(_fwd, _bwd)


class NoGradLinear(nn.Module):
  """Linear logits on pixels, behind a function whose backward pass raises."""

  @nn.compact
  def __call__(self, x_NHWC):
    x = refuse_gradients(x_NHWC.reshape(x_NHWC.shape[0], -1))
    return nn.Dense(10)(x)


def params_with_gap(key, gap: float):
  """Class 0 leads class 1 by `gap` at 0 input; only class 1 reads the pixels, w = +-1e-3 with
  one random sign per channel (a color reader: squares, one sign per channel, can align)."""
  w = np.zeros((28, 28, 3, 10), np.float32)
  w[..., 1] = 1e-3 * np.sign(np.asarray(jax.random.normal(key, (3,))))
  w = w.reshape(D, 10)
  b = np.full((10,), -50.0, np.float32)
  b[0] = gap
  b[1] = 0.0
  return {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}


def test_refuses_gradients_yet_attacks():
  model = NoGradLinear()
  x = jnp.full((4, 28, 28, 3), 127.5)
  params = params_with_gap(jax.random.key(0), gap=0.0)
  # At x0 class 0 leads class 1 by 5; a Linf change of eps 10 moves w . x by up to 23.5.
  lead = 5.0 + 127.5 * float(jnp.sum(params["Dense_0"]["kernel"][:, 1]))
  params["Dense_0"]["bias"] = params["Dense_0"]["bias"].at[0].set(lead)
  pred = lambda a: np.asarray(jnp.argmax(model.apply({"params": params}, a), -1))
  assert np.all(pred(x) == 0)
  f = lambda xx: jnp.sum(model.apply({"params": params}, xx))
  with pytest.raises(RuntimeError, match="gradient"):  # The wrapper does refuse.
    jax.grad(f)(x)
  adv = square_lib.square(model, params, x, jnp.zeros(4, jnp.int32), eps=10.0, queries=100,
                          key=jax.random.key(1))
  assert np.all(pred(adv) != 0)
  assert np.abs(np.asarray(adv - x)).max() <= 10.0 + 1e-4
  adv = square_lib.square(model, params, x, jnp.ones(4, jnp.int32), eps=10.0, queries=100,
                          targeted=True, key=jax.random.key(1))
  assert np.all(pred(adv) == 1)


def test_stays_in_ball_and_box_and_eps_zero_is_identity():
  model = NoGradLinear()
  params = params_with_gap(jax.random.key(2), gap=1e3)  # Unbreakable: every query is spent.
  x = jax.random.uniform(jax.random.key(3), (5, 28, 28, 3), jnp.float32, 0.0, 255.0)
  x = x.at[0].set(0.0).at[1].set(255.0)
  y = jnp.zeros(5, jnp.int32)
  eps_N = jnp.array([8.0, 8.0, 4.0, 0.0, 12.0])
  adv = square_lib.square(model, params, x, y, eps=eps_N, queries=30, key=jax.random.key(4))
  d = np.abs(np.asarray(adv - x, np.float64)).reshape(5, -1).max(1)
  assert np.all(d <= np.asarray(eps_N) + 1e-4)
  assert d[3] == 0.0 and d[4] > 6.0
  assert float(adv.min()) >= 0.0 and float(adv.max()) <= 255.0


def test_p_schedule_and_square_side():
  q = 10_000
  p = lambda it, queries: float(square_lib.p_at(it, queries, p_init=0.05))
  assert p(0, q) == pytest.approx(0.05) and p(10, q) == pytest.approx(0.05)
  assert p(11, q) == pytest.approx(0.025)
  assert p(501, q) == pytest.approx(0.05 / 16)
  assert p(9999, q) == pytest.approx(0.05 / 512)
  assert p(51, 1000) == pytest.approx(0.05 / 16)  # Rescaled: iteration 51 of 1000 is 510.
  assert int(square_lib.square_side(0.05, 28, 28)) == round(np.sqrt(0.05 * 784))
  assert int(square_lib.square_side(1e-6, 28, 28)) == 1
  assert int(square_lib.square_side(1.0, 28, 28)) == 27


def test_bad_inputs_are_rejected():
  model, params = NoGradLinear(), params_with_gap(jax.random.key(0), 1.0)
  x, y = jnp.zeros((2, 28, 28, 3)), jnp.zeros(2, jnp.int32)
  with pytest.raises(ValueError, match="queries"):
    square_lib.square(model, params, x, y, eps=1.0, queries=-1, key=jax.random.key(0))
  with pytest.raises(ValueError, match="eps must be >= 0"):
    square_lib.square(model, params, x, y, eps=-1.0, queries=1, key=jax.random.key(0))
