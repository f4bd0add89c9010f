"""DFR: the head found in any model, the logistic-regression fit against known answers, and a
refit workdir that depends on the balanced subset only and reads like a training run."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ccmnist import models
from ccmnist.data import groups
from ccmnist.data import splits as splits_lib
from ccmnist.train import dfr
from ccmnist.train import loop
from ccmnist.train import runs
from ccmnist.train.methods import lff
from configs import common


@pytest.mark.parametrize("name,path", [("cheater", ("Dense_0",)), ("shape_cnn", ("Dense_1",)),
                                       ("mlp", ("Dense_2",)), ("lff_mlp", ("Dense_3",)),
                                       ("lff_pair", ("Dense_0",))])
def test_head_features_times_the_head_are_the_logits(name, path):
  model = (lff.wrap_model(models.get_model("cheater", num_classes=10)) if name == "lff_pair" else
           models.get_model(name, num_classes=10))
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  assert dfr.head_path(model, params, (28, 28, 3)) == path
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (3, 28, 28, 3)), jnp.float32)
  feats = jax.jit(lambda p, x: dfr.head_features(model, p, x))(params, x)
  head = dfr.get_path(params, path)
  assert feats.shape == (3, head["kernel"].shape[0])
  np.testing.assert_allclose(feats @ head["kernel"] + head["bias"],
                             model.apply({"params": params}, x), rtol=1e-5, atol=1e-5)


def test_a_model_without_a_linear_head_is_refused():
  class Tanh(models.MLP):
    def __call__(self, x):
      return jnp.tanh(super().__call__(x))
  model = Tanh(num_classes=10)
  with pytest.raises(ValueError, match="does not return a Dense layer's output"):
    dfr.head_path(model, models.init_params(model, jax.random.key(0), (28, 28, 3)), (28, 28, 3))


def symmetric_answer(reg):
  """Two points x = 3 (class 1) and 5 (class 0), standardized to -1 and +1: by symmetry the
  kernel is (a, -a) and the logit gap 2a; the optimum of log(1 + e^(-2a)) + reg a^2 solves
  reg a = sigmoid(-2a) (bisection)."""
  lo, hi = 0.0, 100.0
  for _ in range(200):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if reg * mid < 1 / (1 + np.exp(2 * mid)) else (lo, mid)
  return lo


@pytest.mark.parametrize("mode", ["map", "vmap"])
def test_fit_matches_known_logistic_regression_answers(mode, monkeypatch):
  monkeypatch.setattr(dfr, "FIT_MAP", mode)
  x = np.array([[[3.0], [5.0]]], np.float32)  # One seed, two examples, one feature.
  y = np.array([[1, 0]])
  regs = (0.5, 0.1)
  kernel, bias = dfr.fit_heads(x, y, regs, num_classes=2, steps=50)
  assert kernel.shape == (2, 1, 2) and bias.shape == (2, 2)
  for g, reg in enumerate(regs):
    a = symmetric_answer(reg)
    # On raw features: z = x - 4, so the kernel is (a, -a) and the bias folds in the mean.
    np.testing.assert_allclose(kernel[g, 0], [a, -a], rtol=1e-4)
    np.testing.assert_allclose(bias[g] - bias[g].mean(), [-4 * a, 4 * a], rtol=1e-4)

  # Several classes: the fit is the regularized optimum (zero gradient), and weaker
  # regularization fits the subset closer.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 120, 6)).astype(np.float32) * [1, 2, 3, 1, 5, 0] + 7
  y = rng.integers(0, 4, (2, 120))
  kernel, bias = dfr.fit_heads(x, y, (1e-1, 1e-3), num_classes=4, steps=100)
  for r in range(4):
    g, s = divmod(r, 2)
    mean, std = dfr.standardizer(jnp.asarray(x[s]))
    np.testing.assert_array_equal(std[-1], 1.0)  # The constant feature.
    z = (x[s] - mean) / std
    head = (kernel[r] * std[:, None], bias[r] + mean @ kernel[r])  # Back to standardized.
    grad = jax.grad(dfr.objective)(head, z, y[s], (1e-1, 1e-3)[g])
    assert max(float(jnp.abs(v).max()) for v in grad) < 1e-4
    np.testing.assert_allclose(kernel[r][-1], 0.0, atol=1e-6)  # Regularized to 0.
  ce = lambda r: float(dfr.objective((kernel[r], bias[r]), x[r % 2], y[r % 2], 0.0))
  assert ce(2) < ce(0) and ce(3) < ce(1)


def test_l1_fit_zeroes_irrelevant_features_at_the_l1_optimum():
  """Feature 0 decides the class, features 1-3 are noise: L1 sets their weights to exactly 0
  (where L2 keeps them), and the fit meets the L1 optimality conditions: on the standardized
  features the CE gradient of a nonzero weight is -reg * sign(w), of a zero one at most reg."""
  rng = np.random.default_rng(3)
  y = rng.integers(0, 2, (1, 200))
  x = rng.normal(size=(1, 200, 4)).astype(np.float32) * [1, 2, 1, 3] + [0, 1, -2, 5]
  x[..., 0] += 3.0 * y
  reg = 0.05
  kernel, bias = dfr.fit_heads(x, y, (reg,), num_classes=2, steps=500, penalty="l1")
  np.testing.assert_array_equal(kernel[0, 1:], 0.0)
  assert np.all(np.abs(kernel[0, 0]) > 0.1)
  l2_kernel, _ = dfr.fit_heads(x, y, (reg,), num_classes=2, steps=100, penalty="l2")
  assert np.abs(l2_kernel[0, 1:]).max() > 1e-3
  mean, std = dfr.standardizer(jnp.asarray(x[0]))
  z = (x[0] - mean) / std
  head = (kernel[0] * std[:, None], bias[0] + mean @ kernel[0])
  grad = jax.grad(dfr.objective)(head, z, y[0], 0.0)  # The CE's gradient alone.
  w, gw = np.asarray(head[0]), np.asarray(grad[0])
  np.testing.assert_allclose(gw[w != 0], -reg * np.sign(w[w != 0]), atol=2e-4)
  assert np.all(np.abs(gw[w == 0]) <= reg + 2e-4)
  np.testing.assert_allclose(grad[1], 0.0, atol=2e-4)  # The bias: not penalized.


def test_averaged_fit_is_the_mean_of_the_single_fits():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 3, 40, 5)).astype(np.float32) + rng.normal(size=(2, 3, 1, 5))
  y = rng.integers(0, 3, (2, 3, 40))
  regs = (0.01, 0.1)
  kernel, bias = dfr.fit_averaged(x, y, regs, num_classes=3, steps=50, penalty="l1")
  assert kernel.shape == (4, 5, 3) and bias.shape == (4, 3)
  singles = [dfr.fit_heads(x[:, j], y[:, j], regs, num_classes=3, steps=50, penalty="l1")
             for j in range(3)]
  np.testing.assert_allclose(kernel, np.mean([k for k, _ in singles], axis=0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(bias, np.mean([b for _, b in singles], axis=0), rtol=1e-5,
                             atol=1e-6)
  assert not np.allclose(singles[0][0], singles[1][0])  # The subsets' fits differ.


# ---------------------------------------------------------------- the workdir

@pytest.fixture(scope="module", name="base")
def fixture_base(tmp_path_factory):
  """A tiny ERM run of two seeds whose data holds a val_balanced split."""
  c = common.train_config("tiny")
  c.data.train_size, c.data.val_balanced_size = 384, 200
  c.num_seeds = 2
  c.loss.settings = ml_collections.ConfigDict()
  c.lock()
  workdir = tmp_path_factory.mktemp("base")
  loop.train_and_evaluate(c, workdir)
  return workdir, c


def test_refit_writes_a_training_workdir_that_changes_only_the_head(base, tmp_path):
  base_dir, c = base
  results = dfr.refit(base_dir, tmp_path / "dfr", reg_grid=(0.1, 0.001), steps=30,
                      num_subsets=2)
  out = tmp_path / "dfr"
  config = runs.load_config(out)
  assert config.dfr.base == str(base_dir.resolve()) and tuple(config.dfr.reg_grid) == (0.1, 0.001)
  assert [(r["seed"], r["lam"]) for r in runs.replicas(config)] == [
      (0, 0.1), (1, 0.1), (0, 0.001), (1, 0.001)]
  assert [g["lam"] for g in results["grid"]] == [0.1, 0.001]
  assert set(results["accuracy"]) == {"train", "test_easy", "test_hard", "val_balanced"}
  assert json.loads((out / "results.json").read_text()) == results
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 1 and rows[0]["accuracy"]["test_hard"] == [
      r["accuracy"]["test_hard"] for r in results["replicas"]]

  model, params, _ = runs.load_run(out, replica=None)
  _, base_params, _ = runs.load_run(base_dir, replica=None)
  refit = dict(np.load(out / "refit.npz"))
  for name in base_params:
    for leaf in base_params[name]:
      got = np.asarray(params[name][leaf])
      if name == "Dense_0":
        np.testing.assert_array_equal(got, refit[leaf])
        assert not np.allclose(got[:2], np.asarray(base_params[name][leaf]))
      else:  # Replica g * 2 + s holds seed s's layer, as the base trained it.
        np.testing.assert_array_equal(got, np.asarray(base_params[name][leaf])[[0, 1, 0, 1]])
  # The predictions are the refit model's.
  preds = runs.load_predictions(out)
  splits = splits_lib.get_splits(c.data)
  for r in range(4):
    p = jax.tree_util.tree_map(lambda a, r=r: a[r], params)
    logits = model.apply({"params": p}, jnp.asarray(splits["test_hard"]["images"], jnp.float32))
    assert np.mean(np.argmax(logits, -1) == preds["test_hard"][r]) > 0.99
    acc = np.mean(preds["test_hard"][r] == splits["test_hard"]["labels"])
    assert results["replicas"][r]["accuracy"]["test_hard"] == pytest.approx(acc)

  # Each seed's subset is balanced over the 20 groups.
  held = splits["val_balanced"]
  for rows in refit["rows"]:
    counts = groups.group_counts(held["labels"][rows], held["aligned"][rows])
    assert len(set(counts.tolist())) == 1 and counts[0] >= 1
  assert refit["rows"].shape[0] == 2 * 2  # Row s * 2 + j: seed s's subset j.
  assert len({r.tobytes() for r in refit["rows"]}) == 4  # Each seed and subset its own draw.

  # Finished: returned at once, not refit (a fit would fail here).
  def no_fit(*a, **k):
    raise AssertionError("refit again")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(dfr, "fit_heads", no_fit)
    assert dfr.refit(base_dir, out, reg_grid=(0.1, 0.001), steps=30, num_subsets=2) == results
  with pytest.raises(ValueError, match="different config"):
    dfr.refit(base_dir, out, reg_grid=(0.1,), steps=30)


def test_refit_depends_on_the_balanced_subset_only(base, tmp_path, monkeypatch):
  base_dir, c = base
  fit = lambda name: (dfr.refit(base_dir, tmp_path / name, reg_grid=(0.01,), steps=30,
                                num_subsets=1),
                      dict(np.load(tmp_path / name / "refit.npz")))[1]
  first = fit("a")
  real = splits_lib.get_splits(c.data)
  rows = first["rows"]
  outside = np.setdiff1d(np.arange(len(real["val_balanced"]["labels"])), rows.ravel())[0]

  def changed(row):
    def get_splits(cfg, **kw):
      out = {k: dict(v) for k, v in real.items()}
      images = out["val_balanced"]["images"].copy()
      images[row] = 255 - images[row]
      out["val_balanced"]["images"] = images
      return out
    return get_splits

  monkeypatch.setattr(splits_lib, "get_splits", changed(outside))
  same = fit("b")
  np.testing.assert_array_equal(same["kernel"], first["kernel"])
  np.testing.assert_array_equal(same["rows"], rows)
  monkeypatch.setattr(splits_lib, "get_splits", changed(rows[0][0]))
  other = fit("c")
  assert not np.allclose(other["kernel"][0], first["kernel"][0])


def test_refit_reads_only_its_held_out_subsets(base, tmp_path, monkeypatch):
  """The fit's inputs are the features of the rows of its balanced subsets of val_balanced, J
  per seed, and nothing else: a train split made different leaves the heads as they were."""
  base_dir, c = base
  real = splits_lib.get_splits(c.data)
  seen = []
  real_fit = dfr.fit_averaged

  def spy(x, labels, *a, **k):
    seen.append((np.asarray(x), np.asarray(labels)))
    return real_fit(x, labels, *a, **k)
  monkeypatch.setattr(dfr, "fit_averaged", spy)
  dfr.refit(base_dir, tmp_path / "a", reg_grid=(0.01,), num_subsets=3, steps=20)
  first = dict(np.load(tmp_path / "a" / "refit.npz"))
  rows, held = first["rows"], real["val_balanced"]
  assert rows.shape[0] == 2 * 3 and len({r.tobytes() for r in rows}) == 6
  (x, labels), = seen
  assert x.shape[:3] == (2, 3, rows.shape[1])
  np.testing.assert_array_equal(labels.reshape(6, -1), held["labels"][rows])
  model, params, _ = runs.load_run(base_dir, replica=None)
  for i, r in enumerate(rows):  # Seed i // 3's features of exactly those held-out rows.
    p = jax.tree_util.tree_map(lambda a, s=i // 3: a[s], params)
    want = dfr.head_features(model, p, jnp.asarray(held["images"][r]))
    np.testing.assert_allclose(x.reshape(6, *x.shape[2:])[i], want, rtol=1e-5, atol=1e-5)

  def other_train(cfg, **kw):
    out = {k: dict(v) for k, v in real.items()}
    out["train"]["images"] = 255 - out["train"]["images"]
    out["train"]["labels"] = (out["train"]["labels"] + 1) % 10
    return out
  monkeypatch.setattr(splits_lib, "get_splits", other_train)
  dfr.refit(base_dir, tmp_path / "b", reg_grid=(0.01,), num_subsets=3, steps=20)
  second = dict(np.load(tmp_path / "b" / "refit.npz"))
  np.testing.assert_array_equal(second["kernel"], first["kernel"])
  np.testing.assert_array_equal(second["rows"], rows)


def test_refit_refuses_bad_arguments(base, tmp_path):
  base_dir, _ = base
  with pytest.raises(ValueError, match="reg_grid must be a non-empty"):
    dfr.refit(base_dir, tmp_path / "x", reg_grid=())
  with pytest.raises(ValueError, match="held-out split"):
    dfr.refit(base_dir, tmp_path / "x", reg_grid=(0.1,), split="train")
  with pytest.raises(ValueError, match="no 'val_unbiased' split"):
    dfr.refit(base_dir, tmp_path / "x", reg_grid=(0.1,), split="val_unbiased")
  with pytest.raises(ValueError, match="per_group must be >= 1"):
    dfr.refit(base_dir, tmp_path / "x", reg_grid=(0.1,), per_group=0)
  with pytest.raises(ValueError, match="penalty must be one of"):
    dfr.refit(base_dir, tmp_path / "x", reg_grid=(0.1,), penalty="l0")
  with pytest.raises(ValueError, match="num_subsets"):
    dfr.refit(base_dir, tmp_path / "x", reg_grid=(0.1,), num_subsets=0)
  with pytest.raises(ValueError, match="the base run's own"):
    dfr.refit(base_dir, base_dir, reg_grid=(0.1,))
  assert not (tmp_path / "x").exists()
