"""Every conv implementation equals flax's nn.Conv: outputs, gradients, gradients of gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ccmnist import models
from ccmnist.models import layers

# (in channels, out channels, kernel, stride, padding, input size): the CheaterCNN's three convs,
# and shapes where the stride does not divide the padded input or the kernel, or the last input
# rows fall outside every window (8 = 3 * 2 + 2).
GEOMETRIES = [(3, 8, 9, 2, 4, 28), (8, 16, 5, 2, 2, 14), (16, 16, 3, 1, 1, 7),
              (2, 3, 4, 3, 1, 11), (3, 2, 3, 2, 0, 8), (2, 4, 3, 3, 0, 8), (4, 2, 5, 2, 3, 9)]


def _flax_conv(x, kernel, bias, stride, padding):
  conv = nn.Conv(kernel.shape[-1], kernel.shape[:2], strides=stride,
                 padding=((padding, padding), (padding, padding)))
  return conv.apply({"params": {"kernel": kernel, "bias": bias}}, x)


def _inputs(cin, cout, k, h, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(2, h, h, cin)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / k, jnp.float32)
  bias = jnp.asarray(rng.normal(size=(cout,)), jnp.float32)
  return x, kernel, bias


@pytest.mark.parametrize("impl", layers.CONV_IMPLS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_impl_matches_flax(impl, geometry):
  cin, cout, k, s, p, h = geometry
  x, kernel, bias = _inputs(cin, cout, k, h)
  ours = lambda x, kern: layers.conv2d(x, kern, bias, stride=s, padding=p, impl=impl)
  ref = lambda x, kern: _flax_conv(x, kern, bias, s, p)
  np.testing.assert_allclose(ours(x, kernel), ref(x, kernel), rtol=1e-5, atol=1e-5)

  # A non-uniform cotangent: sum(y * r) makes every output position count differently.
  r = jnp.asarray(np.random.default_rng(1).normal(size=ref(x, kernel).shape), jnp.float32)
  grads = lambda f: jax.jit(jax.grad(lambda x, kern: jnp.sum(f(x, kern) * r), argnums=(0, 1)))(
      x, kernel)
  for got, want in zip(grads(ours), grads(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

  # The gradient penalty differentiates the input gradient again, w.r.t. the kernel. ('patches'
  # is built from slices and a matmul, whose second derivatives are XLA's own; its compile
  # takes ~20 s here, so only the first-order check runs for it.)
  if impl == "patches":
    return
  def penalty_grad(f):
    dx = lambda kern: jax.grad(lambda x: jnp.sum(f(x, kern) * r))(x)
    return jax.jit(jax.grad(lambda kern: jnp.sum(dx(kern) ** 2)))(kernel)
  np.testing.assert_allclose(penalty_grad(ours), penalty_grad(ref), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("width", [11, 12])  # Output widths 7 and 8: q divides one, not both.
def test_column_phase_conv_is_the_plain_conv(q, width):
  """q adjacent output columns as q * O channels: the same conv, including where q does not
  divide the output width (the last group's extra columns are cut off)."""
  rng = np.random.default_rng(q)
  x = jnp.asarray(rng.normal(size=(2, 9, width, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 5, 5, 4)), jnp.float32)
  want = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = layers.column_phase_conv(x, k, q)
  assert got.shape == want.shape == (2, 7, width - 4, 4)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_column_phase_conv_picks_q_from_the_output_features():
  """None: 16 // O columns per position (a conv with 8 features runs as one with 16)."""
  x = jnp.zeros((1, 6, 10, 3))
  conv = lambda o: [e for e in jax.make_jaxpr(layers.column_phase_conv)(
      x, jnp.zeros((3, 3, 3, o))).eqns if e.primitive.name == "conv_general_dilated"]
  (eight,), (sixteen,) = conv(8), conv(16)
  assert eight.params["window_strides"] == (1, 2) and eight.invars[1].aval.shape[-1] == 16
  assert sixteen.params["window_strides"] == (1, 1) and sixteen.invars[1].aval.shape[-1] == 16


def test_phase_input_grad_finite_differences():
  """Directional derivative of <conv(x), r> along a random dx, against the input gradient."""
  cin, cout, k, s, p, h = GEOMETRIES[0]
  x, kernel, bias = _inputs(cin, cout, k, h, seed=2)
  f = lambda x: layers.conv2d(x, kernel, bias, stride=s, padding=p, impl="s2d")
  r = jnp.asarray(np.random.default_rng(3).normal(size=f(x).shape), jnp.float32)
  g = jax.grad(lambda x: jnp.sum(f(x) * r))(x)
  v = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)
  eps = 1e-2
  fd = (jnp.sum(f(x + eps * v) * r) - jnp.sum(f(x - eps * v) * r)) / (2 * eps)
  np.testing.assert_allclose(jnp.sum(g * v), fd, rtol=1e-3)


def test_models_agree_across_impls():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.uniform(0, 255, (3, 28, 28, 3)), jnp.float32)
  model = models.get_model("cheater", num_classes=10)
  # No compile:
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), (28, 28, 3)))
  params = jax.tree_util.tree_map(
      lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.1, jnp.float32), shapes)
  outs = {impl: models.get_model("cheater", num_classes=10, conv_impl=impl).apply(
      {"params": params}, x) for impl in layers.CONV_IMPLS}
  for impl in layers.CONV_IMPLS:
    np.testing.assert_allclose(outs[impl], outs["lax"], rtol=1e-5, atol=1e-4)


def test_penalty_gradient_matches_lax_through_the_model():
  """The gradient penalty's parameter gradient runs through every layer's rules: the input
  gradient of a conv differentiated w.r.t. its cotangent and kernel, across layers."""
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.uniform(0, 255, (3, 28, 28, 3)), jnp.float32)
  y = jnp.asarray([1, 4, 7])
  shapes = jax.eval_shape(lambda: models.init_params(models.get_model("cheater", num_classes=10),
                                                     jax.random.key(0), (28, 28, 3)))
  params = jax.tree_util.tree_map(
      lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.1, jnp.float32), shapes)

  def penalty_grad(impl):
    model = models.get_model("cheater", num_classes=10, conv_impl=impl)
    def penalty(p):
      logit = lambda x: jnp.sum(jnp.take_along_axis(model.apply({"params": p}, x), y[:, None], 1))
      return jnp.sum(jax.grad(logit)(x) ** 2)
    return jax.jit(jax.grad(penalty))(params)

  got, want = penalty_grad("s2d"), penalty_grad("lax")
  for path, g in jax.tree_util.tree_leaves_with_path(got):
    w = dict(jax.tree_util.tree_leaves_with_path(want))[path]
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(jnp.abs(w).max()),
                               err_msg=jax.tree_util.keystr(path))


def test_unknown_impl_raises():
  x, kernel, bias = _inputs(3, 8, 9, 28)
  with pytest.raises(ValueError, match="Unknown conv impl 'nope'"):
    layers.conv2d(x, kernel, bias, stride=2, padding=4, impl="nope")
