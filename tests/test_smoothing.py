"""Randomized smoothing: closed-form radii on a model that ignores its input, abstention at small
n, the Clopper-Pearson bound, certified accuracy, and the Gaussian-noise training method."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ccmnist.attacks import smoothing
from ccmnist.train import methods


class Constant(nn.Module):
  """Ignores its input: logits favour class `cls` whatever the noise."""
  cls: int = 4

  @nn.compact
  def __call__(self, x_NHWC):
    b = self.param("b", lambda k: jax.nn.one_hot(self.cls, 10))
    return jnp.zeros((x_NHWC.shape[0], 10)) + b


class Brightness(nn.Module):
  """Class 1 when the image's mean pixel exceeds 127.5, else class 0."""

  @nn.compact
  def __call__(self, x_NHWC):
    m = jnp.mean(x_NHWC, axis=(1, 2, 3)) - 127.5
    return jnp.stack([-m, m] + [jnp.full_like(m, -1e3)] * 8, -1)


def _x(n=5):
  return jax.random.uniform(jax.random.key(0), (n, 28, 28, 3), jnp.float32, 0.0, 255.0)


def test_input_ignoring_model_is_certified_at_the_closed_form_radius():
  model = Constant()
  params = model.init(jax.random.key(0), _x(1))["params"]
  sigma, n, alpha = 30.0, 500, 0.001
  out = smoothing.certify(model, params, _x(), sigma=sigma, n0=10, n=n, alpha=alpha,
                          key=jax.random.key(1), chunk=64)
  # Every sample says 4, so nA = n and the lower bound is alpha^(1/n).
  np.testing.assert_array_equal(out["prediction"], 4)
  np.testing.assert_array_equal(out["counts"], n)
  want = sigma * stats.norm.ppf(alpha ** (1.0 / n))
  np.testing.assert_allclose(out["radius"], want, rtol=1e-6)
  np.testing.assert_allclose(out["p_lower"], alpha ** (1.0 / n), rtol=1e-9)
  # Unanimity is the most n draws can say: no image is certified beyond this radius.
  assert smoothing.max_radius(sigma, n, alpha) == pytest.approx(float(out["radius"][0]))
  assert smoothing.max_radius(30.6, 10_000, 0.001) == pytest.approx(97.9, abs=0.05)
  assert np.all(smoothing.predict(model, params, _x(), sigma=sigma, n=50, alpha=alpha,
                                  key=jax.random.key(2)) == 4)


def test_abstains_at_small_n():
  """With n = 5 even unanimous samples bound pA below alpha^(1/5) = 0.25 < 1/2: abstain."""
  model = Constant()
  params = model.init(jax.random.key(0), _x(1))["params"]
  out = smoothing.certify(model, params, _x(), sigma=30.0, n0=5, n=5, alpha=0.001,
                          key=jax.random.key(1))
  np.testing.assert_array_equal(out["prediction"], smoothing.ABSTAIN)
  np.testing.assert_array_equal(out["radius"], 0.0)
  assert np.all(smoothing.predict(model, params, _x(), sigma=30.0, n=5, alpha=0.001,
                                  key=jax.random.key(2)) == smoothing.ABSTAIN)


def test_a_coin_flip_abstains_and_a_clear_vote_does_not():
  """Grey images (mean exactly 127.5) split Brightness's votes evenly; bright ones do not."""
  model = Brightness()
  grey, bright = jnp.full((3, 28, 28, 3), 127.5), jnp.full((3, 28, 28, 3), 200.0)
  kw = dict(sigma=50.0, n=400, alpha=0.001, key=jax.random.key(3))
  assert np.all(smoothing.predict(model, {}, grey, **kw) == smoothing.ABSTAIN)
  assert np.all(smoothing.predict(model, {}, bright, **kw) == 1)
  out = smoothing.certify(model, {}, bright, sigma=50.0, n0=20, n=400, alpha=0.001,
                          key=jax.random.key(4))
  # The mean of 2352 noisy pixels has std 50 / sqrt(2352): every vote is 1.
  np.testing.assert_allclose(out["radius"], 50.0 * stats.norm.ppf(0.001 ** (1 / 400)))


def test_lower_bound_and_certified_accuracy():
  # Clopper-Pearson: the bound lies below the point estimate and its coverage is the beta's.
  lo = smoothing.lower_confidence_bound(np.array([0, 50, 100]), 100, 0.05)
  assert lo[0] == 0.0 and 0.4 < lo[1] < 0.5 and lo[2] == pytest.approx(0.05 ** 0.01)
  acc = smoothing.certified_accuracy([1, 2, -1, 3], [5.0, 1.0, 0.0, 2.0], [1, 2, 0, 0],
                                     [0.0, 1.0, 3.0])
  assert acc == [0.5, 0.5, 0.25]
  with pytest.raises(ValueError, match="sigma"):
    smoothing.certify(Constant(), {}, _x(1), sigma=0.0, n0=1, n=1, alpha=0.1,
                      key=jax.random.key(0))


def test_gaussian_noise_method_adds_seeded_noise_of_sigma():
  method = methods.get("gaussian_noise")
  from ccmnist.train.methods import noise  # pylint: disable=import-outside-toplevel
  images = jnp.full((4, 28, 28, 3), 100.0)
  index = jnp.array([0, 1, 2, 0])
  out = noise.noisy_rows(images, index, jax.random.key(0), sigma=20.0)
  d = np.asarray(out - images)
  assert abs(d.std() / 20.0 - 1.0) < 0.05
  np.testing.assert_array_equal(d[0], d[3])  # The row's index, not its place, picks the noise.
  assert not np.allclose(d[0], d[1])
  assert method.defaults["sigma"] > 0 and method.sliceable


def test_certified_figure_stops_each_curve_at_its_largest_certifiable_radius():
  from ccmnist.plots import attacks as attack_plots  # pylint: disable=import-outside-toplevel
  radii = [0.0, 64.0, 128.0, 255.0]
  curves = {"sigma 30.6": {"a": [0.9, 0.5, 0.0, 0.0]}, "sigma 127.5": {"a": [0.4, 0.3, 0.2, 0.1]}}
  fig = attack_plots.certified_accuracy_curves(radii, curves,
                                               reach={"sigma 30.6": 97.9, "sigma 127.5": 408.0})
  small, large = fig.axes[0], fig.axes[1]
  np.testing.assert_array_equal(small.get_lines()[0].get_xdata(), [0.0, 64.0])
  assert list(small.get_lines()[1].get_xdata()) == [97.9, 97.9]  # The dotted bound.
  np.testing.assert_array_equal(large.get_lines()[0].get_xdata(), radii)
  assert len(large.get_lines()) == 1  # Its bound lies past the grid: nothing to mark.
