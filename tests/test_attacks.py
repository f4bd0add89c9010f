"""Attacks: projection, closed forms on a linear model, uniform starts, compile counts, sweeps,
the Attack built from its config, and the driver's batching."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from ccmnist import models
from ccmnist.attacks import anatomy
from ccmnist.attacks import pgd as pgd_lib
from ccmnist.attacks import sweep
from ccmnist.data import splits as splits_lib
from ccmnist.util import batches
from configs import attack as attack_config
from configs import common

D = 28 * 28 * 3


class Linear(nn.Module):
  """logits = x_flat @ W + b on pixels, so every gradient has a closed form."""

  @nn.compact
  def __call__(self, x_NHWC):
    return nn.Dense(10)(x_NHWC.reshape(x_NHWC.shape[0], -1))


def linear_params(key, scale=1e-3):
  kw, kb = jax.random.split(key)
  return {"Dense_0": {"kernel": scale * jax.random.normal(kw, (D, 10)),
                      "bias": 0.1 * jax.random.normal(kb, (10,))}}


def random_images(key, n=6):
  return jax.random.uniform(key, (n, 28, 28, 3), jnp.float32, 0.0, 255.0)


# ---------------------------------------------------------------- basic properties

@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_eps_zero_is_identity(norm, random_start):
  model, params = Linear(), linear_params(jax.random.key(0))
  x = random_images(jax.random.key(1))
  y = jnp.arange(6) % 10
  adv = pgd_lib.pgd(model, params, x, y, eps=0.0, step_size=2.0, steps=5, norm=norm,
                    random_start=random_start, key=jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(adv), np.asarray(x))
  adv = pgd_lib.fgsm(model, params, x, y, eps=0.0, norm=norm)
  np.testing.assert_array_equal(np.asarray(adv), np.asarray(x))


@pytest.mark.parametrize("norm,eps,random_start,targeted,model_name", [
    ("linf", 8.0, True, True, "mlp"), ("linf", 8.0, False, False, "mlp"),
    ("l2", 300.0, True, False, "mlp"), ("l2", 300.0, False, True, "mlp")])
def test_stays_in_ball_and_box(norm, eps, random_start, targeted, model_name):
  model = models.get_model(model_name, num_classes=10, conv_impl="patches")
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  x = random_images(jax.random.key(1)).at[:2].set(0.0).at[2:4].set(255.0)  # Box edges too.
  y = jnp.array([0, 3, 5, 7, 9, 1])
  eps_N = jnp.array([eps, eps / 2, eps, 0.0, eps * 2, eps])  # Per-example eps.
  adv = pgd_lib.pgd(model, params, x, y, eps=eps_N, step_size=eps / 3, steps=4, norm=norm,
                    targeted=targeted, random_start=random_start, restarts=2,
                    key=jax.random.key(3))
  d = np.asarray(adv - x, np.float64).reshape(6, -1)
  size = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
  assert np.all(size <= np.asarray(eps_N) * (1 + 1e-5) + 1e-4)
  assert np.all(size[[4, 5]] > 0.5 * eps)  # Interior images did move.
  assert float(adv.min()) >= 0.0 and float(adv.max()) <= 255.0


def test_bad_inputs_are_rejected():
  model, params = Linear(), linear_params(jax.random.key(0))
  x, y, k = random_images(jax.random.key(1)), jnp.zeros(6, jnp.int32), jax.random.key(0)
  with pytest.raises(ValueError, match="norm"):
    pgd_lib.pgd(model, params, x, y, eps=1.0, step_size=1.0, steps=1, norm="l1", key=k)
  with pytest.raises(ValueError, match="eps must be >= 0"):
    pgd_lib.pgd(model, params, x, y, eps=-1.0, step_size=1.0, steps=1, key=k)
  with pytest.raises(ValueError, match="labels"):
    pgd_lib.pgd(model, params, x, y[:3], eps=1.0, step_size=1.0, steps=1, key=k)
  with pytest.raises(ValueError, match="loss"):
    pgd_lib.fgsm(model, params, x, y, eps=1.0, loss="hinge")


# ---------------------------------------------------------------- closed forms, linear model

def _ce_input_grad(params, x, y):
  """d CE / d x of the linear model by hand: (softmax - onehot) W^T."""
  w, b = np.asarray(params["Dense_0"]["kernel"], np.float64), np.asarray(
      params["Dense_0"]["bias"], np.float64)
  xf = np.asarray(x, np.float64).reshape(len(x), -1)
  z = xf @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return ((p - np.eye(10)[np.asarray(y)]) @ w.T).reshape(x.shape)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_and_first_pgd_step_match_closed_form(targeted):
  model, params = Linear(), linear_params(jax.random.key(4))
  x = jax.random.uniform(jax.random.key(5), (5, 28, 28, 3), jnp.float32, 40.0, 215.0)
  y = jnp.array([1, 2, 3, 4, 5])
  g = _ce_input_grad(params, x, y) * (-1.0 if targeted else 1.0)  # Ascent direction.
  x64 = np.asarray(x, np.float64)
  # Linf: x + eps sign(g) (inside the box by construction).
  want = x64 + 10.0 * np.sign(g)
  got = pgd_lib.fgsm(model, params, x, y, eps=10.0, targeted=targeted)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-3)
  got = pgd_lib.pgd(model, params, x, y, eps=10.0, step_size=3.0, steps=1, targeted=targeted,
                    random_start=False, key=jax.random.key(0))
  np.testing.assert_allclose(np.asarray(got), x64 + 3.0 * np.sign(g), atol=1e-3)
  # L2: x + eps g / ||g||.
  unit = g / np.linalg.norm(g.reshape(5, -1), axis=1)[:, None, None, None]
  got = pgd_lib.fgsm(model, params, x, y, eps=100.0, norm="l2", targeted=targeted)
  np.testing.assert_allclose(np.asarray(got), x64 + 100.0 * unit, atol=1e-3)
  got = pgd_lib.pgd(model, params, x, y, eps=100.0, step_size=30.0, steps=1, norm="l2",
                    targeted=targeted, random_start=False, key=jax.random.key(0))
  np.testing.assert_allclose(np.asarray(got), x64 + 30.0 * unit, atol=1e-3)


def test_margin_loss_gradient_is_logit_difference():
  """Untargeted margin: step against d(z_y - z_j*)/dx = W_y - W_j* on a linear model."""
  model, params = Linear(), linear_params(jax.random.key(6))
  x = jax.random.uniform(jax.random.key(7), (4, 28, 28, 3), jnp.float32, 40.0, 215.0)
  y = jnp.array([0, 1, 2, 3])
  w = np.asarray(params["Dense_0"]["kernel"])
  z = np.asarray(model.apply({"params": params}, x))
  zo = np.where(np.eye(10, dtype=bool)[np.asarray(y)], -np.inf, z)
  j = zo.argmax(1)
  g = (w[:, np.asarray(y)] - w[:, j]).T.reshape(x.shape)
  got = pgd_lib.fgsm(model, params, x, y, eps=5.0, loss="margin")
  np.testing.assert_allclose(np.asarray(got), np.asarray(x) - 5.0 * np.sign(g), atol=1e-3)


# ---------------------------------------------------------------- random start

def test_l2_random_start_is_uniform_in_ball():
  n, eps = 4000, 50.0
  x0 = jnp.full((n, 28, 28, 3), 127.5)
  x = pgd_lib.uniform_start(jax.random.key(8), x0, jnp.full((n,), eps), norm="l2")
  d = np.asarray(x - x0, np.float64).reshape(n, -1)
  r = np.linalg.norm(d, axis=1)
  assert np.all(r <= eps * (1 + 1e-5))
  # P(r <= t eps) = t^d, so (r / eps)^d is U(0, 1). float32 radii near eps: compute in logs.
  u = np.exp(D * np.log(np.minimum(r / eps, 1.0)))
  assert stats.kstest(u, "uniform").pvalue > 1e-3
  # Directions are isotropic: the mean direction is near zero, coordinates symmetric.
  unit = d / r[:, None]
  assert np.abs(unit.mean(0)).max() < 6.0 / np.sqrt(n * D)


def test_linf_random_start_is_uniform_in_cube():
  n, eps = 200, 12.75
  x0 = jnp.full((n, 28, 28, 3), 127.5)
  x = pgd_lib.uniform_start(jax.random.key(9), x0, jnp.full((n,), eps), norm="linf")
  d = np.asarray(x - x0).ravel() / eps
  assert np.abs(d).max() <= 1.0
  assert stats.kstest((d + 1) / 2, "uniform").pvalue > 1e-3


# ---------------------------------------------------------------- trained tiny model

@pytest.fixture(scope="module")
def tiny_trained():
  """A small MLP fitted by Adam on the 'tiny' synthetic split (a second or two)."""
  cfg = common.data_config("tiny")
  data = splits_lib.get_splits(cfg, use_cache=False)
  model = models.get_model("mlp", num_classes=10, hidden=(64,))
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  x = jnp.asarray(data["train"]["images"], jnp.float32)
  y = jnp.asarray(data["train"]["labels"])

  @jax.jit
  def step(params, opt, idx):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": p}, x[idx]), y[idx]).mean()
    g = jax.grad(loss)(params)
    upd, opt = tx.update(g, opt)
    return optax.apply_updates(params, upd), opt

  rng = np.random.default_rng(0)
  for _ in range(100):
    params, opt = step(params, opt, jnp.asarray(rng.choice(len(y), 64, replace=False)))
  test = data["test_easy"]
  return model, params, test["images"][:32].astype(np.float32), test["labels"][:32]


def test_targeted_pgd_reaches_target(tiny_trained):
  model, params, x, y = tiny_trained
  clean_acc = float(np.mean(np.argmax(model.apply({"params": params}, x), -1) == y))
  assert clean_acc > 0.8
  t = (y + 1) % 10
  adv = pgd_lib.pgd(model, params, x, t, eps=40.0, step_size=4.0, steps=30, targeted=True,
                    key=jax.random.key(0))
  by_argmax = pgd_lib.targeted_success(model.apply({"params": params}, adv), t)[1]
  assert float(np.mean(by_argmax)) > 0.9
  # How far p(target) can rise is the model's (this small MLP stays under 0.9 for some pairs even
  # at ε 100); the 30 steps must raise it well beyond one step of the full budget.
  p_target = lambda a: jax.nn.softmax(model.apply({"params": params}, a))[np.arange(len(t)), t]
  one_step = pgd_lib.pgd(model, params, x, t, eps=40.0, step_size=40.0, steps=1, targeted=True,
                         key=jax.random.key(0))
  assert float(p_target(adv).mean()) > float(p_target(one_step).mean()) + 0.1
  # Margin loss and restarts reach it too.
  adv = pgd_lib.pgd(model, params, x, t, eps=40.0, step_size=4.0, steps=30, targeted=True,
                    loss="margin", restarts=2, key=jax.random.key(1))
  assert float(np.mean(pgd_lib.targeted_success(model.apply({"params": params}, adv), t)[1])) > 0.9


@pytest.mark.parametrize("norm,eps,step", [("linf", 20.0, 3.0), ("l2", 600.0, 80.0)])
def test_untargeted_pgd_lowers_accuracy(tiny_trained, norm, eps, step):
  model, params, x, y = tiny_trained
  acc = lambda im: float(np.mean(np.argmax(model.apply({"params": params}, im), -1) == y))
  adv = pgd_lib.pgd(model, params, x, y, eps=eps, step_size=step, steps=20, norm=norm,
                    key=jax.random.key(0))
  assert acc(adv) < acc(x) - 0.5
  assert float(np.mean(pgd_lib.untargeted_success(model.apply({"params": params}, adv), y))) \
      == pytest.approx(1 - acc(adv))
  fg = pgd_lib.fgsm(model, params, x, y, eps=eps, norm=norm)
  assert acc(fg) < acc(x)


def test_restarts_keep_the_best(tiny_trained):
  """With restarts, no example ends worse than the first restart alone (same key for r=0)."""
  model, params, x, y = tiny_trained
  t = (y + 3) % 10
  kw = dict(eps=6.0, step_size=1.5, steps=5, targeted=True, key=jax.random.key(4))
  one = pgd_lib.pgd(model, params, x, t, restarts=1, **kw)
  many = pgd_lib.pgd(model, params, x, t, restarts=4, **kw)
  obj = lambda im: np.asarray(pgd_lib.attack_objective(
      model.apply({"params": params}, im), jnp.asarray(t), loss="ce", targeted=True))
  ok = lambda im: np.asarray(pgd_lib.targeted_success(model.apply({"params": params}, im), t)[1])
  assert np.all(ok(many) >= ok(one))
  same_ok = ok(many) == ok(one)
  assert np.all(obj(many)[same_ok] <= obj(one)[same_ok] + 1e-5)


# ---------------------------------------------------------------- compilation

def test_compiles_once_per_shape():
  model, params = Linear(), linear_params(jax.random.key(0))
  y = jnp.zeros(4, jnp.int32)
  kw = dict(step_size=1.0, steps=3, norm="linf", targeted=True, restarts=1)
  before = pgd_lib.TRACE_COUNTS["pgd"]
  for i in range(3):  # Different values, same shapes and settings: one trace.
    pgd_lib.pgd(model, linear_params(jax.random.key(i)), random_images(jax.random.key(i), 4),
                y + i, eps=float(i + 1), key=jax.random.key(i), **kw)
  pgd_lib.pgd(model, params, random_images(jax.random.key(0), 4), y,
              eps=jnp.arange(4.0), key=jax.random.key(0), **kw)  # Per-example eps: same.
  assert pgd_lib.TRACE_COUNTS["pgd"] - before == 1
  pgd_lib.pgd(model, params, random_images(jax.random.key(0), 5), jnp.zeros(5, jnp.int32),
              eps=1.0, key=jax.random.key(0), **kw)  # A new shape: one more.
  assert pgd_lib.TRACE_COUNTS["pgd"] - before == 2


# ---------------------------------------------------------------- the Attack, built once

def test_from_config_binds_the_study_attack():
  attack = pgd_lib.from_config(attack_config.get_config().pgd)
  assert attack == pgd_lib.Attack(eps=12.75, step_size=1.5, steps=30, norm="linf",
                                  targeted=True, random_start=True, loss="ce", restarts=1)
  assert hash(attack) == hash(dataclasses.replace(attack))  # A static jit argument.
  with pytest.raises(ValueError, match="Unknown attack settings"):
    pgd_lib.from_config({**attack_config.get_config().pgd.to_dict(), "epsilon": 1.0})
  with pytest.raises(ValueError, match="norm"):
    dataclasses.replace(attack, norm="l1")
  with pytest.raises(ValueError, match="loss"):
    dataclasses.replace(attack, loss="hinge")
  with pytest.raises(ValueError, match="restarts"):
    dataclasses.replace(attack, restarts=0)
  with pytest.raises(ValueError, match=">= 0"):
    dataclasses.replace(attack, eps=-1.0)


def test_attack_call_is_pgd_with_its_bound_settings():
  """attack(...) and pgd(...) with the same settings run the same program: equal images."""
  model, params = Linear(), linear_params(jax.random.key(0))
  x, y, k = random_images(jax.random.key(1), 4), jnp.array([1, 2, 3, 4]), jax.random.key(2)
  attack = pgd_lib.Attack(eps=8.0, step_size=2.0, steps=3, targeted=True, restarts=2)
  want = pgd_lib.pgd(model, params, x, y, eps=8.0, step_size=2.0, steps=3, targeted=True,
                     restarts=2, key=k)
  before = pgd_lib.TRACE_COUNTS["pgd"]
  np.testing.assert_array_equal(np.asarray(attack(model, params, x, y, k)), np.asarray(want))
  assert pgd_lib.TRACE_COUNTS["pgd"] == before  # No second compile.
  eps_N = jnp.array([0.0, 2.0, 4.0, 8.0])  # A per-example budget overrides the bound one.
  np.testing.assert_array_equal(
      np.asarray(attack(model, params, x, y, k, eps=eps_N)),
      np.asarray(pgd_lib.pgd(model, params, x, y, eps=eps_N, step_size=2.0, steps=3,
                             targeted=True, restarts=2, key=k)))
  # A relative step scales with each example's eps.
  rel = dataclasses.replace(attack, step_size_rel=0.25)
  np.testing.assert_allclose(np.asarray(rel.step_for(eps_N)), 0.25 * np.asarray(eps_N))
  np.testing.assert_array_equal(
      np.asarray(rel(model, params, x, y, k, eps=eps_N)),
      np.asarray(pgd_lib.pgd(model, params, x, y, eps=eps_N, step_size=0.25 * eps_N, steps=3,
                             targeted=True, restarts=2, key=k)))
  with pytest.raises(ValueError, match="eps must be a scalar or one per example"):
    attack(model, params, x, y, k, eps=jnp.ones(3))


# ---------------------------------------------------------------- sweep and minimal eps

def test_sweep_equals_per_eps_calls(tiny_trained):
  model, params, x, y = tiny_trained
  x, t = x[:16], (y[:16] + 2) % 10
  eps = [0.0, 5.0, 12.75, 20.0]
  attack = pgd_lib.Attack(eps=12.75, step_size=1.5, steps=10, targeted=True)
  key = jax.random.key(5)
  before = pgd_lib.TRACE_COUNTS["sweep"]
  advs = sweep.sweep(attack, model, params, x, t, eps, key)
  sweep.sweep(dataclasses.replace(attack), model, params, x + 1.0, t, [1.0, 2.0, 3.0, 4.0],
              key)  # An equal attack, other values: the same program.
  assert pgd_lib.TRACE_COUNTS["sweep"] - before == 1
  assert advs.shape == (4,) + x.shape
  mapped = sweep.sweep(attack, model, params, x, t, eps, key, batching="map")
  assert np.mean(np.abs(np.asarray(mapped) - np.asarray(advs)) > 1e-3) < 1e-3
  with pytest.raises(ValueError, match="batching"):
    sweep.sweep(attack, model, params, x, t, eps, key, batching="loop")
  with pytest.raises(ValueError, match="epsilons must be >= 0"):
    sweep.sweep(attack, model, params, x, t, [-1.0, 2.0], key)
  for e, adv in zip(eps, advs):
    one = attack(model, params, x, t, key, eps=e)
    # Batched convs may round differently; a rare sign flip of a ~0 gradient moves a pixel by
    # one step, so compare the bulk and the outcome.
    diff = np.abs(np.asarray(adv) - np.asarray(one))
    assert np.mean(diff > 1e-3) < 1e-3
    ev = lambda im: np.asarray(pgd_lib.targeted_success(model.apply({"params": params}, im),
                                                        t)[1])
    assert np.mean(ev(adv) != ev(one)) <= 1 / 16


def _two_class_linear(key, n):
  """A linear model where only classes 0 and 1 can win; eps* of 0 -> 1 in closed form."""
  w = np.zeros((D, 10), np.float32)
  w1 = np.asarray(jax.random.normal(key, (D,)), np.float64)
  w[:, 1] = 1e-3 * (w1 - w1.mean())
  b = np.full(10, -1e4, np.float32)
  b[0], b[1] = 0.0, -20.0
  params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}
  x = jax.random.uniform(jax.random.fold_in(key, 1), (n, 28, 28, 3), jnp.float32, 60.0, 195.0)
  xf = np.asarray(x, np.float64).reshape(n, -1)
  margin0 = xf @ w[:, 1].astype(np.float64) + b[1] - b[0]  # z_1 - z_0 at eps 0.
  l1 = np.abs(w[:, 1].astype(np.float64)).sum()
  return Linear(), params, x, margin0, l1


@pytest.mark.parametrize("criterion", ["argmax", "prob"])
def test_minimal_eps_brackets_closed_form(criterion):
  """Linf: the best perturbation is eps sign(w), so eps* = (c - margin0) / ||w||_1 with
  c = 0 (argmax) or log 9 (p > 0.9). Bisection must bracket it."""
  n = 12
  model, params, x, margin0, l1 = _two_class_linear(jax.random.key(10), n)
  c = 0.0 if criterion == "argmax" else np.log(9.0)
  eps_star = np.maximum((c - margin0) / l1, 0.0)
  eps_max, iters = 60.0, 12
  assert np.all(eps_star < eps_max - 1) and np.sum(eps_star > 1) > n // 2
  attack = pgd_lib.Attack(eps=eps_max, step_size=0.0, step_size_rel=0.5, steps=8,
                          targeted=True, random_start=False)
  out = sweep.minimal_eps(attack, model, params, x, jnp.ones(n, jnp.int32), jax.random.key(0),
                          eps_max=eps_max, iters=iters, criterion=criterion)
  tol = 1e-3 * eps_max
  assert np.all(out["found"])
  assert np.all(out["lo"] <= eps_star + tol) and np.all(eps_star <= out["hi"] + tol)
  assert np.all(out["hi"] - out["lo"] <= eps_max / 2 ** iters + 1e-4)
  np.testing.assert_allclose(out["min_eps"], out["hi"])


def test_minimal_eps_reports_failures_as_inf():
  n = 4
  model, params, x, margin0, l1 = _two_class_linear(jax.random.key(11), n)
  eps_star = -margin0 / l1
  eps_max = float(np.min(eps_star[eps_star > 0])) / 4  # Too small for every positive eps*.
  attack = pgd_lib.Attack(eps=eps_max, step_size=0.0, step_size_rel=0.5, steps=8,
                          targeted=True, random_start=False)
  out = sweep.minimal_eps(attack, model, params, x, jnp.ones(n, jnp.int32), jax.random.key(0),
                          eps_max=eps_max, iters=4, criterion="argmax")
  np.testing.assert_array_equal(np.isinf(out["min_eps"]), eps_star > 0)
  np.testing.assert_array_equal(out["min_eps"][eps_star <= 0], 0.0)
  with pytest.raises(ValueError, match="criterion"):
    sweep.minimal_eps(attack, model, params, x, jnp.ones(n, jnp.int32), jax.random.key(0),
                      eps_max=eps_max, iters=4, criterion="loss")
  with pytest.raises(ValueError, match="eps_max"):
    sweep.minimal_eps(attack, model, params, x, jnp.ones(n, jnp.int32), jax.random.key(0),
                      eps_max=0.0, iters=4)


# ---------------------------------------------------------------- pure analysis pieces

def test_chromatic_share():
  grey = np.ones((2, 28, 28, 3))  # Equal channels: no chromatic energy.
  assert anatomy.perturbation_anatomy(grey)["chromatic_share"] == pytest.approx(0.0)
  chroma = np.zeros((2, 28, 28, 3))
  chroma[..., 0], chroma[..., 1] = 1.0, -1.0  # Zero channel mean: all chromatic.
  assert anatomy.perturbation_anatomy(chroma)["chromatic_share"] == pytest.approx(1.0)
  one_channel = np.zeros((1, 28, 28, 3))
  one_channel[..., 2] = 3.0  # (3 - 1)^2 + 1 + 1 = 6 of 9.
  assert anatomy.perturbation_anatomy(one_channel)["chromatic_share"] == pytest.approx(2 / 3)


def test_stroke_mask_and_energy_split():
  x = np.full((1, 28, 28, 3), 120.0)
  x[0, 10:14, 10:14] = (255.0, 255.0, 0.0)  # A yellow 4x4 'stroke' on grey.
  m = anatomy.stroke_mask(x)
  assert m.sum() == 16 and m[0, 10:14, 10:14].all()
  d = np.zeros_like(x)
  d[0, 10:14, 10:14] = 2.0  # On-stroke energy 16*3*4 = 192.
  d[0, 0, :4] = 4.0  # Off-stroke energy 4*3*16 = 192.
  a = anatomy.perturbation_anatomy(d, m)
  assert a["stroke_energy_share"] == pytest.approx(0.5)
  assert a["mean_abs_on_stroke"] == pytest.approx(2.0)
  assert a["mean_abs_off_stroke"] == pytest.approx(16.0 / (784 - 16))


def striped_images(n=8, seed=0):
  """Grey images (level 120) with a colored 'stroke' (columns 8-19 of rows 6-21) in a random
  unsaturated color, so that perturbations of a few levels are never clipped on them."""
  rng = np.random.default_rng(seed)
  x = np.full((n, 28, 28, 3), 120.0)
  colors = rng.uniform(40, 120, (n, 3))
  colors[:, 0] = 220.0  # R at least 67 levels above the channel mean: inside the stroke mask.
  x[:, 6:22, 8:20] = colors[:, None, None]
  return x


def test_color_shift_fit_by_hand():
  x = striped_images(2)
  m = anatomy.stroke_mask(x)
  d = np.random.default_rng(1).normal(size=x.shape)
  v, explained, total = anatomy.color_shift_fit(d, m)
  np.testing.assert_allclose(v, np.stack([d[i][m[i]].mean(0) for i in range(2)]))
  np.testing.assert_allclose(explained, m.sum((1, 2)) * (v ** 2).sum(1))
  np.testing.assert_allclose(total, (d ** 2).sum((1, 2, 3)))
  with pytest.raises(ValueError, match="mask shape"):
    anatomy.color_shift_fit(d, m[:, :5])


def test_anatomy_of_synthetic_perturbations_beside_the_null():
  x = striped_images()
  m = anatomy.stroke_mask(x)
  assert m[:, 6:22, 8:20].all() and m.sum() == 8 * 16 * 12
  eps = 8.0
  v = np.random.default_rng(2).choice([-eps, eps], (8, 3))
  shift = m[..., None] * v[:, None, None, :]  # The stroke recolored, nothing else moved.
  a = anatomy.anatomy_with_null(x, x + shift, eps=eps, seed=0)
  assert a["color_shift_share"] == pytest.approx(1.0)
  assert a["stroke_energy_share"] == pytest.approx(1.0)
  assert a["color_shift_images_above_null_p95"] == 1.0
  # Random signs of the same budget (another seed) score what the null scores.
  signs = anatomy.random_perturbation(x, eps=eps, seed=5)
  r = anatomy.anatomy_with_null(x, x + signs, eps=eps, seed=0)
  for k in ("color_shift_share", "stroke_energy_share", "mean_abs_on_stroke", "mean_linf"):
    assert r[k] == pytest.approx(r[f"{k}_null"], rel=0.1, abs=2e-3), k
  # Unclipped random signs: the fit explains 3 eps^2 per image of 2352 eps^2 in expectation;
  # the energy on the stroke is its pixel share.
  assert r["color_shift_share_null"] == pytest.approx(3 / 2352, rel=0.5)
  assert r["stroke_energy_share_null"] == pytest.approx(a["stroke_pixel_share"], rel=0.05)
  assert r["color_shift_images_above_null_p95"] < 0.3
  # Off the stroke only: no color shift, no energy on the stroke.
  b = anatomy.anatomy_with_null(x, x + (~m)[..., None] * signs, eps=eps, seed=0)
  assert b["color_shift_share"] == 0.0 and b["stroke_energy_share"] == 0.0
  assert b["mean_abs_on_stroke"] == 0.0 and b["stroke_energy_images_above_null_p95"] == 0.0


def test_anatomy_null_is_clipped_like_the_attack():
  x = np.full((4, 28, 28, 3), 120.0)
  x[:, 8:20, 8:20] = (255.0, 0.0, 0.0)  # Saturated red: each channel can move one way only.
  a = anatomy.anatomy_with_null(x, x, eps=10.0, seed=3)
  assert a["mean_abs_off_stroke_null"] == 10.0  # Grey pixels: never clipped.
  assert a["mean_abs_on_stroke_null"] == pytest.approx(5.0, rel=0.05)  # Half of the signs.
  assert a["mean_linf_null"] == 10.0
  d = anatomy.random_perturbation(x, eps=10.0, seed=3)
  assert (x + d).min() >= 0 and (x + d).max() <= 255
  np.testing.assert_array_equal(d, anatomy.random_perturbation(x, eps=10.0, seed=3))
  assert not np.array_equal(d, anatomy.random_perturbation(x, eps=10.0, seed=4))
  l2 = anatomy.random_perturbation(np.full((3, 28, 28, 3), 120.0), eps=50.0, norm="l2", seed=0)
  np.testing.assert_allclose(np.sqrt((l2 ** 2).sum((1, 2, 3))), 50.0)
  with pytest.raises(ValueError, match="norm"):
    anatomy.random_perturbation(x, eps=1.0, norm="l1")
  # Every measure compared with the null has its null beside it.
  assert all(f"{k}_null" in a for k in anatomy.NULL_KEYS)


def test_select_examples():
  labels = np.arange(100) % 10
  colors = (labels + 1) % 10
  ten = dict(color_class=tuple(range(10)))
  idx, t = sweep.select_examples(labels, colors, rule="fixed", target=3, num=50, **ten)
  assert np.all(labels[idx] != 3) and np.all(t == 3) and np.all(colors[idx] != 3)
  assert len(idx) == 50
  idx, t = sweep.select_examples(labels, colors, rule="pair", source=7, target=3, num=5, **ten)
  assert np.all(labels[idx] == 7) and len(idx) == 5
  idx, t = sweep.select_examples(labels, colors, rule="shift", shift=2, num=100, **ten)
  np.testing.assert_array_equal(t, (labels[idx] + 2) % 10)
  assert len(idx) == 100
  with pytest.raises(ValueError, match="No example"):  # Every color here is label + 1.
    sweep.select_examples(labels, colors, rule="shift", shift=1, num=100, **ten)
  with pytest.raises(ValueError, match="rule"):
    sweep.select_examples(labels, colors, rule="nope", num=5, **ten)


def test_map_batches_pads_trims_and_numbers_batches():
  """The driver's batching: fixed shapes (one compile), padding dropped, batch b is index b
  (each batch's key is folded in from it)."""
  calls = []

  def fn(b, a):
    calls.append((b, a.shape))
    return {"x": a * 2, "b": np.full(a.shape, b)}

  out = batches.map_batches(fn, [np.arange(7.0)], batch_size=3, with_index=True)
  np.testing.assert_array_equal(out["x"], np.arange(7.0) * 2)
  np.testing.assert_array_equal(out["b"], [0, 0, 0, 1, 1, 1, 2])
  assert calls == [(0, (3,)), (1, (3,)), (2, (3,))]
  out = batches.map_batches(lambda b, a: {"e": np.stack([a, -a])}, [np.arange(7.0)],
                            batch_size=3, axis=1, with_index=True)
  np.testing.assert_array_equal(out["e"], np.stack([np.arange(7.0), -np.arange(7.0)]))


def test_attack_runs_rejects_a_bad_config_before_loading(tmp_path):
  """A bad attack setting fails at once, naming the field, before any run is read."""
  from ccmnist.attacks import run  # pylint: disable=import-outside-toplevel
  cfg = attack_config.get_config("tiny")
  with cfg.unlocked():
    cfg.pgd.norm = "l1"
  with pytest.raises(ValueError, match="config.pgd.*norm"):
    run.attack_runs({"a": str(tmp_path / "missing")}, cfg, tmp_path / "out")
  cfg = attack_config.get_config("tiny")
  with cfg.unlocked():
    cfg.success.criterion = "loss"
  with pytest.raises(ValueError, match="criterion"):
    run.attack_runs({"a": str(tmp_path / "missing")}, cfg, tmp_path / "out")
  assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the suite, checks, report

def test_top_targets_skip_the_label():
  from ccmnist.attacks import suite  # pylint: disable=import-outside-toplevel
  z = np.array([[0.0, 5.0, 3.0, 4.0, 1.0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(suite.top_targets(z, np.array([1]), 2), [[3], [2]])
  np.testing.assert_array_equal(suite.top_targets(z, np.array([3]), 2), [[1], [2]])


def _suite_entry(*, clean=1.0, ce=0.5, dlr=0.4, sq=0.6, worst=0.3, grey=0.0, white=0.7,
                 black=0.4, more=0.45, t_worst=0.8):
  return {"num_images": 100, "eps": 12.75, "clean_accuracy": clean, "replica": 0,
          "robust_accuracy": {"apgd_ce": ce, "apgd_t_dlr": dlr, "square": sq},
          "worst_robust_accuracy": worst, "square_only": 2,
          "targeted": {"apgd_ce": 0.5, "apgd_dlr": 0.6, "pgd": 0.4, "worst": t_worst},
          "masking": {"grey_eps": 128.0, "grey_accuracy": grey, "white_success": white,
                      "black_success": black,
                      "more_steps": {"steps": 200, "restarts": 3, "robust_accuracy": more}}}


def test_masking_checks_flag_each_symptom():
  from ccmnist.attacks import suite  # pylint: disable=import-outside-toplevel
  per = {"a": _suite_entry(), "b": _suite_entry(grey=0.2, black=0.9, more=0.6)}
  transfer = {"names": ["a", "b"], "success_argmax": [[0.9, 0.8], [0.3, 0.5]]}
  out = suite.masking_checks(per, transfer, tol=0.02, zero_tol=0.01)
  assert all(c["holds"] for c in out["a"].values())  # a -> a 0.9 >= b -> a 0.3.
  assert {k for k, c in out["b"].items() if not c["holds"]} == {
      "grey", "black", "budget", "transfer"}  # a -> b 0.8 > b -> b 0.5.
  assert "0.8" not in out["b"]["transfer"]["measured"]  # Percent, with its source named.
  assert "from a" in out["b"]["transfer"]["measured"]


def test_attack_suite_report_and_findings():
  from ccmnist.attacks import suite  # pylint: disable=import-outside-toplevel
  from ccmnist.report import attack_suite  # pylint: disable=import-outside-toplevel
  per = {"counterfactual@0": _suite_entry(worst=0.1, t_worst=0.9),
         "counterfactual": _suite_entry(worst=0.6, t_worst=0.2, grey=0.3)}
  checks = suite.masking_checks(per, None, tol=0.02, zero_tol=0.01)
  att = {"suite": {"models": per, "masking_checks": checks},
         "smoothing": {"alpha": 0.001, "n0": 10, "n": 100, "models": {"cheater": {
             "radii": [0.0, 32.0], "num_images": 10, "replica": 0, "sigmas": {"63.75": {
                 "sigma": 63.75, "certified_accuracy": [0.5, 0.25], "abstain": 0.1,
                 "median_radius_correct": 20.0}, "10.0": {
                 "sigma": 10.0, "certified_accuracy": [0.5, 0.0], "abstain": 0.1,
                 "median_radius_correct": 5.0}}}}}}
  lines = attack_suite.section(att)
  assert any("FAILED" in line and line.startswith("| counterfactual |") for line in lines)
  assert any("60.0%" in line for line in lines)
  cert = attack_suite.certified_section(att)
  assert any("| cheater | 63.75 | 10.0% | 20.0 | 50.0% | 25.0% |" == line for line in cert)
  # 100 draws at alpha 0.001 certify at most 10 * Phi^-1(0.001^(1/100)) = 15.0 at sigma 10:
  # its r=32 is not measurable, so it reads '—', not a 0 made by construction.
  assert any("| cheater | 10.0 | 10.0% | 5.0 | 50.0% | — |" == line for line in cert)
  assert "σ 63.75: 95.7, σ 10.0: 15.0" in cert[2]
  rows = attack_suite.findings(att)
  assert [r["holds"] for r in rows] == [True, True]  # Differences far beyond the noise.
  assert all(r["p"] is None and r["family"] == 0 for r in rows)  # One replica: no test.
  assert all("masking check failed: counterfactual grey" in r["measured"] for r in rows)
  assert all(r["runs"] == ["counterfactual@0", "counterfactual"] and r["seeds"] == 1
             for r in rows)
  assert attack_suite.findings({})[0]["holds"] is None
  assert attack_suite.section({}) == [] and attack_suite.certified_section(None) == []


def test_run_suite_on_a_linear_model():
  """The suite end to end at tiny sizes: rates in [0, 1], worst case below each attack."""
  from ccmnist.attacks import suite  # pylint: disable=import-outside-toplevel
  model, params = Linear(), linear_params(jax.random.key(0), scale=3e-3)
  x = random_images(jax.random.key(1), 4)
  y = jnp.argmax(model.apply({"params": params}, x), -1)
  cfg = attack_config.get_config("tiny").suite
  out = suite.run_suite(model, params, np.asarray(x), np.asarray(y), np.full(4, 3), cfg=cfg,
                        key=jax.random.key(2), pgd_targeted_ok=np.zeros(4, bool))
  assert out["clean_accuracy"] == 1.0
  assert all(out["worst_robust_accuracy"] <= r for r in out["robust_accuracy"].values())
  assert out["targeted"]["worst"] >= max(out["targeted"]["apgd_ce"], out["targeted"]["apgd_dlr"])
  assert out["masking"]["grey_accuracy"] == 0.0  # eps 128 reaches anything on a linear model.


class FirstPixelLogits(nn.Module):
  """logits = the first pixel's three channels: the softmax of each image is known by hand."""

  @nn.compact
  def __call__(self, x_NHWC):
    return x_NHWC[:, 0, 0, :]


def test_clean_confidence_is_the_mean_max_softmax_and_the_share_above_the_threshold():
  from ccmnist.attacks import suite  # pylint: disable=import-outside-toplevel
  x = np.zeros((3, 2, 2, 3), np.float32)
  x[1, 0, 0] = [4.0, 0.0, 0.0]  # max-softmax e^4 / (e^4 + 2) = 0.9647
  x[2, 0, 0] = [0.0, 2.0, 1.0]  # e^2 / (1 + e^2 + e) = 0.6652; image 0: 1/3.
  p = [1 / 3, np.e ** 4 / (np.e ** 4 + 2), np.e ** 2 / (1 + np.e ** 2 + np.e)]
  out = suite.clean_confidence(FirstPixelLogits(), {}, x, threshold=0.9, batch_size=2)
  assert out["mean_max_softmax"] == pytest.approx(np.mean(p), rel=1e-6)
  assert out["share_above_threshold"] == pytest.approx(1 / 3)  # Only image 1.
  assert out["num_images"] == 3 and out["threshold"] == 0.9
  lower = suite.clean_confidence(FirstPixelLogits(), {}, x, threshold=0.5, batch_size=3)
  assert lower["share_above_threshold"] == pytest.approx(2 / 3)


def test_attack_suite_findings_pair_every_seed():
  from ccmnist.attacks import suite  # pylint: disable=import-outside-toplevel
  from ccmnist.report import attack_suite  # pylint: disable=import-outside-toplevel
  ctrl = [_suite_entry(worst=w, t_worst=t) for w, t in ((0.1, 0.9), (0.2, 0.8), (0.15, 0.95))]
  meth = [_suite_entry(worst=w, t_worst=t) for w, t in ((0.6, 0.2), (0.5, 0.3), (0.7, 0.1))]
  meth[1]["masking"]["grey_accuracy"] = 0.3  # The second seed fails the grey check.
  for s, (c, m) in enumerate(zip(ctrl, meth)):
    c["seed"] = m["seed"] = 10 + s
  per_seed = [{"counterfactual@0": c, "counterfactual": m} for c, m in zip(ctrl, meth)]
  checks = [suite.masking_checks(p, None, tol=0.02, zero_tol=0.01) for p in per_seed]
  att = {"suite": {"models": {"counterfactual@0": {**ctrl[0], "seeds": ctrl},
                              "counterfactual": {**meth[0], "seeds": meth}},
                   "masking_checks": checks[0], "masking_checks_seeds": checks}}
  rows = attack_suite.findings(att)
  assert [r["seeds"] for r in rows] == [3, 3] and all(r["df"] == 2 for r in rows)
  assert all(r["run_seeds"] == [[10, 11, 12], [10, 11, 12]] for r in rows)
  # Seed s of the control paired with seed s of the method.
  assert rows[0]["p"] == pytest.approx(stats.ttest_rel([0.2, 0.3, 0.1], [0.9, 0.8, 0.95]).pvalue)
  assert rows[1]["p"] == pytest.approx(stats.ttest_rel([0.6, 0.5, 0.7], [0.1, 0.2, 0.15]).pvalue)
  assert all("counterfactual grey (seed 11)" in r["measured"] for r in rows)
  assert "seed 10" not in rows[0]["measured"]
  lines = attack_suite.section(att)
  assert sum(line.startswith("| counterfactual | ") for line in lines) == 3  # A row per seed.
  assert any(line.startswith("| counterfactual (seed 11) | **FAILED**") for line in lines)
