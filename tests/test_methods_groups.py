"""The methods that know the groups or environments, counterfactual augmentation and random
recoloring: hand-computed losses and updates (K replicas = single runs:
test_methods_registered.py)."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ccmnist.data import coloring
from ccmnist.data import groups
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.train import loop
from ccmnist.train import methods
from ccmnist.train import runs
from ccmnist.train.methods import cf_augment
from ccmnist.train.methods import groupdro
from ccmnist.train.methods import irm
from ccmnist.train.methods import recolor
from ccmnist.train.methods import reweight
from ccmnist.train.methods import vrex
from configs import common


pytestmark = pytest.mark.usefixtures("compilation_cache")


class Fixed(nn.Module):
  """Logits that are the parameter `z` [n, 10] itself, whatever the images."""
  n: int

  @nn.compact
  def __call__(self, x):
    del x
    return self.param("z", nn.initializers.zeros, (self.n, 10))


class Linear(nn.Module):
  """Logits x.reshape(n, -1)[:, :10] / 255: no parameters, computable by hand."""

  @nn.compact
  def __call__(self, x):
    return x.reshape(x.shape[0], -1)[:, :10] / 255.0


def np_ce(z, y):
  z = np.asarray(z, np.float64)
  m = z.max(1, keepdims=True)
  return (np.log(np.exp(z - m).sum(1)) + m[:, 0]) - z[np.arange(len(y)), y]


def call(method, z, batch, *, lam=0.0, extra=None, step=0, warmup_steps=0, settings=None):
  """method.loss with logits z [B, 10] (the Fixed model): (loss, aux, extra, d loss / d z)."""
  z = jnp.asarray(z, jnp.float32)
  batch = {"images": jnp.zeros((len(z), 28, 28, 3)), **batch}
  settings = {"grad_scale": "unit", **method.defaults, **(settings or {})}

  def f(z):
    out = method.loss(model=Fixed(len(z)), params={"z": z}, batch=batch, lam=jnp.float32(lam),
                      extra=extra or {}, step=jnp.int32(step), warmup_steps=warmup_steps,
                      settings=settings)
    return out[0], out[1:]
  (value, (aux, new_extra)), grad = jax.value_and_grad(f, has_aux=True)(z)
  return float(value), aux, new_extra, np.asarray(grad)


# ---------------------------------------------------------------- GroupDRO

def test_group_means_by_hand():
  means, counts = groupdro.group_means(jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.array([0, 0, 3, 5]),
                                       6)
  np.testing.assert_allclose(means, [1.5, 0, 0, 3, 0, 4])
  np.testing.assert_allclose(counts, [2, 0, 0, 1, 0, 1])


def test_groupdro_moves_weights_by_the_exponentiated_gradient_rule():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(6, 10)) * 2
  labels = np.array([0, 0, 1, 1, 2, 2])
  aligned = np.array([True, False, True, True, False, False])
  g = 2 * labels + aligned  # Groups 1, 0, 3, 3, 4, 4; the other 15 absent from the batch.
  ce = np_ce(z, labels)
  group_loss = np.zeros(20)
  for k in set(g):
    group_loss[k] = ce[g == k].mean()
  q0 = np.full(20, 1 / 20)
  extra = {"q": jnp.asarray(q0, jnp.float32), "adjustment": jnp.zeros(20)}
  eta = 0.7
  batch = {"labels": jnp.asarray(labels), "aligned": jnp.asarray(aligned)}
  value, aux, new, grad = call(groupdro.METHOD, z, batch, lam=eta, extra=extra)
  want_q = q0 * np.exp(eta * group_loss)
  want_q /= want_q.sum()
  np.testing.assert_allclose(new["q"], want_q, rtol=1e-5)
  assert int(np.argmax(new["q"])) == int(np.argmax(group_loss))  # Toward the worst group.
  assert np.all(np.asarray(new["q"])[group_loss == 0] < 1 / 20)  # Absent groups lose weight.
  assert value == pytest.approx(float(want_q @ group_loss), rel=1e-5)
  assert float(aux["worst_group_loss"]) == pytest.approx(group_loss.max(), rel=1e-5)
  # q is a constant of the gradient: d/dz_i = q_g / n_g * (softmax(z_i) - onehot(y_i)).
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  n_g = np.array([np.sum(g == k) for k in g])
  want_grad = (want_q[g] / n_g)[:, None] * (p - np.eye(10)[labels])
  np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-7)
  # A second step starts from the first's q.
  _, _, newer, _ = call(groupdro.METHOD, z, batch, lam=eta, extra=new)
  np.testing.assert_allclose(newer["q"], want_q * np.exp(eta * group_loss)
                             / (want_q * np.exp(eta * group_loss)).sum(), rtol=1e-5)


def test_groupdro_initial_weights_and_adjustment_from_the_split():
  split = {"labels": np.array([0, 0, 0, 1, 1, 2]),
           "aligned": np.array([True, True, False, True, True, True])}  # Groups 1, 1, 0, 3, 3, 5.
  c = common.train_config("tiny")
  c.loss.name = "groupdro"
  c.loss.settings = ml_collections.ConfigDict({"generalization_adjustment": 2.0})
  extra = groupdro.init_extra(c, split, runs.replicas(c) * 2,
                              settings=methods.settings_of(c), reference=None)
  counts = np.zeros(20)
  counts[[0, 1, 3, 5]] = [1, 2, 2, 1]
  want_q = (counts > 0) / 4.0
  want_adj = np.where(counts > 0, 2.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
  assert extra["q"].shape == (2, 20)
  np.testing.assert_allclose(extra["q"], [want_q] * 2, rtol=1e-6)
  np.testing.assert_allclose(extra["adjustment"], [want_adj] * 2, rtol=1e-6)
  # The adjustment moves q (with the losses all 0, only it does); the loss stays sum q L.
  z = np.zeros((6, 10))
  batch = {"labels": jnp.asarray(split["labels"]), "aligned": jnp.asarray(split["aligned"])}
  one = {k: jnp.asarray(v[0]) for k, v in extra.items()}
  value, _, new, _ = call(groupdro.METHOD, z, batch, lam=0.5, extra=one)
  want = want_q * np.exp(0.5 * (np.log(10) + want_adj))
  np.testing.assert_allclose(new["q"], want / want.sum(), rtol=1e-5)
  assert value == pytest.approx(np.log(10) * 1.0, rel=1e-5)


def test_groupdro_l2_adds_torchs_coupled_weight_decay_to_the_loss():
  """l2: the loss plus 0.5 * l2 * ||params||^2, its gradient plus l2 * params (the paper's
  SGD weight_decay); q moves as without it; l2 = 0 is bit-identical to the plain loss."""
  rng = np.random.default_rng(1)
  z = rng.normal(size=(4, 10))
  batch = {"labels": jnp.asarray([0, 1, 1, 3]), "aligned": jnp.asarray([True, False, True, True])}
  extra = {"q": jnp.full(20, 1 / 20, jnp.float32), "adjustment": jnp.zeros(20)}
  plain = call(groupdro.METHOD, z, batch, lam=0.3, extra=extra)
  zero = call(groupdro.METHOD, z, batch, lam=0.3, extra=extra, settings={"l2": 0.0})
  assert plain[0] == zero[0] and np.array_equal(plain[3], zero[3])
  value, aux, new, grad = call(groupdro.METHOD, z, batch, lam=0.3, extra=extra,
                               settings={"l2": 0.5})
  z32 = np.asarray(z, np.float32).astype(np.float64)
  assert value - plain[0] == pytest.approx(0.25 * np.sum(z32 ** 2), rel=1e-5)
  assert float(aux["penalty"]) == pytest.approx(0.25 * np.sum(z32 ** 2), rel=1e-5)
  np.testing.assert_allclose(grad - plain[3], 0.5 * z32, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(new["q"], plain[2]["q"])


def test_groupdro_negative_l2_refused():
  c = tiny_config("groupdro", l2=-1.0)
  with pytest.raises(ValueError, match="l2 must be >= 0"):
    groupdro.check(c, settings=methods.settings_of(c))


# ---------------------------------------------------------------- reweighting, sampling

def test_group_weights_by_hand():
  split = {"labels": np.array([0, 0, 0, 1]), "aligned": np.array([True, True, False, True])}
  # Groups 1, 1, 0, 3 with counts 2, 1, 1: 1/n = 1/2, 1/2, 1, 1, whose mean is 3/4.
  np.testing.assert_allclose(reweight.group_weights(split), [2 / 3, 2 / 3, 4 / 3, 4 / 3],
                             rtol=1e-6)
  np.testing.assert_allclose(reweight.sample_weights(None, split), [1 / 6, 1 / 6, 1 / 3, 1 / 3])
  extra = reweight.init_extra(None, split, [{}, {}, {}], settings={}, reference=None)
  assert extra["weights"].shape == (3, 4)
  z = np.random.default_rng(1).normal(size=(3, 10))
  batch = {"labels": jnp.array([0, 0, 1]), "index": jnp.array([2, 0, 3])}
  value, aux, _, _ = call(reweight.METHOD, z, batch, extra={"weights": extra["weights"][0]})
  ce = np_ce(z, [0, 0, 1])
  assert value == pytest.approx(float(np.mean(np.array([4 / 3, 2 / 3, 4 / 3]) * ce)), rel=1e-5)
  assert float(aux["ce"]) == pytest.approx(ce.mean(), rel=1e-5)


def test_balanced_sampling_equalizes_group_frequencies():
  # Three groups of 300, 80 and 20 examples.
  labels = np.array([0] * 380 + [1] * 20)
  aligned = np.array([True] * 300 + [False] * 80 + [True] * 20)
  split = {"labels": labels, "aligned": aligned}
  c = common.train_config("tiny")
  c.num_seeds = 2
  g = groups.group_ids(labels, aligned)
  # Without weights, each example at most once an epoch: 12 batches of 32 of the 400.
  for weights, steps, want in ((reweight.sample_weights(c, split), 100, [1 / 3] * 3),
                               (None, 12, [300 / 400, 80 / 400, 20 / 400])):
    orders = np.asarray(loop.epoch_orders(c, 1, 400, steps, weights))
    assert orders.shape == (2, steps, c.train.batch_size)
    for replica in orders:
      freq = np.bincount(g[replica.ravel()], minlength=20)[[1, 0, 3]] / replica.size
      np.testing.assert_allclose(freq, want, atol=0.03)


# ---------------------------------------------------------------- IRM and V-REx

def np_irm_penalty(z, y):
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return float(np.mean(np.sum((p - np.eye(10)[y]) * z, 1)) ** 2)


def test_irm_penalty_closed_form():
  rng = np.random.default_rng(2)
  z, y = rng.normal(size=(7, 10)) * 3, rng.integers(0, 10, 7)
  mask = np.array([1, 0, 1, 1, 0, 0, 1], bool)
  # d/dw CE(w z) at w = 1 is (softmax(z) - onehot(y)) . z.
  assert float(irm.irm_penalty(jnp.asarray(z), jnp.asarray(y))) == pytest.approx(
      np_irm_penalty(z, y), rel=1e-4)
  assert float(irm.irm_penalty(jnp.asarray(z), jnp.asarray(y), jnp.asarray(mask))) == (
      pytest.approx(np_irm_penalty(z[mask], y[mask]), rel=1e-4))
  assert float(irm.irm_penalty(jnp.asarray(z), jnp.asarray(y), jnp.zeros(7, bool))) == 0.0


def calibrated_batch(scale=1.0):
  """Two inputs whose softmax is (3/4, 1/4) and (1/5, 4/5) on digits 0, 1, with labels drawn in
  exactly those proportions: optimal (the true conditional) when scale = 1."""
  za = np.full(10, -30.0)
  za[:2] = [np.log(3.0), 0.0]
  zb = np.full(10, -30.0)
  zb[:2] = [0.0, np.log(4.0)]
  z = np.stack([za] * 4 + [zb] * 5) * scale
  return z, np.array([0, 0, 0, 1, 0, 1, 1, 1, 1])


def test_irm_penalty_zero_when_optimal_in_every_environment_positive_otherwise():
  z, y = calibrated_batch()
  assert float(irm.irm_penalty(jnp.asarray(z), jnp.asarray(y))) < 1e-10
  for scale in (0.5, 2.0):  # Under- and over-confident: a better scale exists.
    zs, _ = calibrated_batch(scale)
    assert float(irm.irm_penalty(jnp.asarray(zs), jnp.asarray(y))) > 1e-3
  # Two environments, one classifier: calibrated in the first, wrong in the second (its labels
  # of input b flipped to (4/5, 1/5)), so no one scale is optimal in both.
  z2 = np.concatenate([z, z])
  y2 = np.concatenate([y, [0, 0, 0, 1, 1, 0, 0, 0, 0]])
  envs = np.array([0] * 9 + [1] * 9)
  batch = {"labels": jnp.asarray(y2), "index": jnp.arange(18)}
  settings = {"env_conflict_scales": (1.5, 0.5)}
  _, aux, _, _ = call(irm.METHOD, z2, batch, lam=1.0, extra={"envs": jnp.asarray(envs)},
                      settings=settings)
  want = (0.0 + np_irm_penalty(z2[9:], y2[9:])) / 2
  assert want > 1e-3
  assert float(aux["penalty"]) == pytest.approx(want, rel=1e-4)
  _, aux, _, _ = call(irm.METHOD, z2[:9], {"labels": jnp.asarray(y), "index": jnp.arange(9)},
                      lam=1.0, extra={"envs": jnp.asarray(envs)}, settings=settings)
  assert float(aux["penalty"]) < 1e-10  # The first environment alone: optimal.


def env_case(seed=3):
  rng = np.random.default_rng(seed)
  z, y = rng.normal(size=(8, 10)) * 2, rng.integers(0, 10, 8)
  envs = np.array([2, 0, 0, 2, 0, 2, 2, 0, 1, 1])  # Row 8 and 9 (env 1) are not in the batch.
  index = np.array([0, 1, 2, 3, 4, 5, 6, 7])
  return z, y, envs, {"labels": jnp.asarray(y), "index": jnp.asarray(index)}


@pytest.mark.parametrize("lam,step,divisor", [(3.0, 5, 3.0), (0.5, 5, 1.0), (3.0, 4, 1.0)])
def test_irm_loss_by_hand_with_environments_from_extra(lam, step, divisor):
  z, y, envs, batch = env_case()
  ce = np_ce(z, y)
  settings = {"env_conflict_scales": (1.0, 1.0, 1.0)}
  weight = lam if step >= 5 else 1.0
  for e_of_rows in (envs, envs[::-1].copy()):  # Other environments in extra: another loss.
    env_b = e_of_rows[:8]
    present = [e for e in range(3) if np.any(env_b == e)]
    risk = np.mean([ce[env_b == e].mean() for e in present])
    pen = np.mean([np_irm_penalty(z[env_b == e], y[env_b == e]) for e in present])
    value, aux, _, _ = call(irm.METHOD, z, batch, lam=lam, step=step, warmup_steps=5,
                            extra={"envs": jnp.asarray(e_of_rows)}, settings=settings)
    assert value == pytest.approx((risk + weight * pen) / divisor, rel=1e-4)
    assert float(aux["penalty"]) == pytest.approx(pen, rel=1e-4)


@pytest.mark.parametrize("lam,step,divisor", [(4.0, 5, 4.0), (0.25, 5, 1.0), (4.0, 0, 1.0)])
def test_vrex_penalty_is_the_variance_of_environment_risks(lam, step, divisor):
  z, y, envs, batch = env_case(4)
  ce = np_ce(z, y)
  risks = np.array([ce[envs[:8] == e].mean() for e in (0, 2)])  # Env 1 absent from the batch.
  value, aux, _, _ = call(vrex.METHOD, z, batch, lam=lam, step=step, warmup_steps=5,
                          extra={"envs": jnp.asarray(envs)},
                          settings={"env_conflict_scales": (1.0, 1.0, 1.0)})
  assert float(aux["penalty"]) == pytest.approx(np.var(risks), rel=1e-4)
  weight = lam if step >= 5 else 1.0
  assert value == pytest.approx((risks.mean() + weight * np.var(risks)) / divisor, rel=1e-4)


def test_irm_family_warmup_is_the_papers_share_of_the_run():
  """IRM's code switches its penalty on at step 190 of 501, V-REx's at 100 of 501: the same
  share of a 100-epoch and a 10-epoch protocol; a method without a fraction keeps its epochs."""
  bench = irm.METHOD.benchmark
  assert [bench.warmup_of(e) for e in (100, 10, 2, 1)] == [38, 4, 1, 1]
  assert [vrex.METHOD.benchmark.warmup_of(e) for e in (100, 10)] == [20, 2]
  assert groupdro.METHOD.benchmark.warmup_of(100) == 0
  assert max(irm.IRM_GRID) > 9e4 and set(irm.IRM_QUICK_GRID) <= set(irm.IRM_GRID)


def tiny_config(name, **settings):
  c = common.train_config("tiny")
  c.data.train_size = 128
  c.loss.name = name
  if settings:
    c.loss.settings = ml_collections.ConfigDict(settings)
  return c


def test_environments_come_from_assign_envs_seeded_by_the_data_seed():
  c = tiny_config("irm", env_conflict_scales=(1.5, 1.0, 0.5))
  c.num_seeds = 2
  c.data.seed = 5
  split = splits_lib.get_splits(c.data)["train"]
  extra = runs.init_extra(c, split)
  want = groups.assign_envs(split["aligned"], (1.5, 1.0, 0.5), np.random.default_rng(5))
  assert extra["envs"].shape == (2, 128)
  np.testing.assert_array_equal(extra["envs"], [want, want])
  assert set(want.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("scales,match", [((1.0,), "at least two"), ((1.5, 1.5), "average 1")])
def test_bad_environment_scales_refused_before_training(tmp_path, scales, match):
  c = tiny_config("vrex", env_conflict_scales=scales)
  with pytest.raises(ValueError, match=match):
    loop.train_and_evaluate(c, tmp_path / "run")
  assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- cf_augment, random_recolor

def test_cf_augment_is_ce_over_both_images():
  rng = np.random.default_rng(5)
  images = rng.uniform(0, 255, (3, 28, 28, 3)).astype(np.float32)
  cf = rng.uniform(0, 255, (3, 28, 28, 3)).astype(np.float32)
  y = np.array([1, 4, 7])
  batch = {"images": jnp.asarray(images), "cf_images": jnp.asarray(cf), "labels": jnp.asarray(y)}
  value, aux, _ = cf_augment.loss(model=Linear(), params={}, batch=batch, lam=0.0, extra={},
                                  step=0, warmup_steps=0, settings={})
  z = np.concatenate([images, cf]).reshape(6, -1)[:, :10] / 255.0
  assert float(value) == pytest.approx(np_ce(z, np.concatenate([y, y])).mean(), rel=1e-5)
  assert float(aux["accuracy"]) == pytest.approx(np.mean(z[:3].argmax(1) == y))


def test_random_recolor_paints_uniform_colors_fresh_each_step_per_row():
  cfg = common.data_config("tiny")
  fn = coloring.recolor_fn(cfg)
  grey = np.zeros((600, 28, 28), np.uint8)
  grey[:, 10:18, 10:18] = 255
  index = jnp.arange(600)
  key = jax.random.key(0)
  images = np.asarray(recolor.recolor_rows(fn, jnp.asarray(grey), index, key, num_colors=10))
  stroke = images[:, 12:16, 12:16].reshape(600, -1, 3).mean(1)
  pal = palette_lib.PALETTE_RGB.astype(np.float64)
  drawn = np.argmin(((stroke[:, None] - pal[None]) ** 2).sum(-1), 1)
  assert np.abs(stroke - pal[drawn]).max() < 12  # Each stroke is one palette color, plus noise.
  np.testing.assert_allclose(np.bincount(drawn, minlength=10) / 600, 0.1, atol=0.05)
  # A row's recoloring does not depend on the rows beside it.
  some = np.asarray(recolor.recolor_rows(fn, jnp.asarray(grey[[7, 3]]), jnp.array([7, 3]), key,
                                       num_colors=10))
  np.testing.assert_array_equal(some, images[[7, 3]])
  # The loss draws from extra's key folded with the step: another step, other colors.
  split = {"labels": jnp.zeros(600, jnp.int32), "grey": jnp.asarray(grey), "index": index}
  extra = recolor.init_extra(None, None, [{"seed": 3}], settings={}, reference=None)
  extra = {k: jnp.asarray(v[0]) for k, v in extra.items()}
  out = []
  for step in (0, 0, 1):
    def logits_of(x, out=out):
      out.append(np.asarray(x))
      return jnp.zeros((x.shape[0], 10))
    fake = type("Fake", (), {"apply": staticmethod(lambda v, x, f=logits_of: f(x))})()
    recolor.loss(model=fake, params={}, batch=split, lam=0.0, extra=extra, step=jnp.int32(step),
                 warmup_steps=0, settings={"data": cfg})
  np.testing.assert_array_equal(out[0], out[1])
  assert np.mean(np.abs(out[0] - out[2]).max((1, 2, 3)) > 50) > 0.7
