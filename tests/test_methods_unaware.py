"""The methods that do not know the bias (JTT, LfF, EIIL): hand-computed losses and updates, and
the reference run they read (K replicas = single runs: test_methods_registered.py)."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ccmnist import models
from ccmnist.data import splits as splits_lib
from ccmnist.train import loop
from ccmnist.train import losses
from ccmnist.train import methods
from ccmnist.train import reference as reference_lib
from ccmnist.train import runs
from ccmnist.train import step as step_lib
from ccmnist.train.methods import eiil
from ccmnist.train.methods import irm
from ccmnist.train.methods import jtt
from ccmnist.train.methods import lff
from ccmnist.zoo import sections
from configs import common


pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_config(name, *, seed=0, num_seeds=1, lam=0.0, grid=(), lock=True, **settings):
  c = common.train_config("tiny")
  c.data.train_size = 128
  c.seed, c.num_seeds, c.loss.name, c.loss.lam, c.loss.lam_grid = seed, num_seeds, name, lam, grid
  c.loss.settings = ml_collections.ConfigDict(settings)
  if lock:
    c.lock()
  return c


@pytest.fixture(scope="module", name="reference")
def fixture_reference(tmp_path_factory):
  """An ERM identification run of seeds 0 and 1: (workdir, config)."""
  workdir = tmp_path_factory.mktemp("reference")
  c = tiny_config("erm", num_seeds=2)
  loop.train_and_evaluate(c, workdir)
  return workdir, c


def train_split(config):
  return splits_lib.get_splits(config.data)["train"]


# ---------------------------------------------------------------- JTT

def test_jtt_upweights_exactly_the_reference_errors(reference):
  ref, _ = reference
  preds = runs.load_predictions(ref)["train"]
  c = tiny_config("jtt", seed=1, num_seeds=1, lam=4.0, reference=str(ref))
  split = train_split(c)
  errors = np.asarray(reference_lib.init_extra(c, split)["errors"])
  want = preds[1] != split["labels"]  # Seed 1 is the reference's replica 1.
  assert errors.shape == (1, 128) and errors.dtype == bool
  np.testing.assert_array_equal(errors[0], want)
  assert 0 < want.sum() < 128  # Some errors, some not: the check can tell them apart.
  # Two seeds read two replicas, in order.
  c2 = tiny_config("jtt", num_seeds=2, lam=4.0, reference=str(ref))
  np.testing.assert_array_equal(reference_lib.init_extra(c2, split)["errors"],
                                preds != split["labels"][None])

  # The loss: the plain mean CE (lambda_up acts through the data, epoch_pool).
  model = models.get_model("cheater", num_classes=10)
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  rows = np.concatenate([np.flatnonzero(want)[:3], np.flatnonzero(~want)[:5]])
  batch = {"images": jnp.asarray(split["images"][rows], jnp.float32),
           "labels": jnp.asarray(split["labels"][rows]), "index": jnp.asarray(rows)}
  value, aux, extra = jtt.loss(model=model, params=params, batch=batch, lam=4.0,
                               extra={"errors": jnp.asarray(errors[0])}, step=0, warmup_steps=0,
                               settings={})
  ce = np.asarray(losses.cross_entropy(
      logits=model.apply({"params": params}, batch["images"]), labels=batch["labels"],
      reduction="none"))
  assert float(value) == pytest.approx(ce.mean(), rel=1e-5)
  assert float(aux["upweighted"]) == pytest.approx(3 / 8)
  assert float(aux["ce"]) == pytest.approx(ce.mean(), rel=1e-5)
  np.testing.assert_array_equal(extra["errors"], errors[0])  # Fixed: sliceable.


def test_split_against_bias_by_hand():
  """10 examples, 2 conflicting (rows 0 and 1); replica 0 marks rows 0, 2, 3 (one conflicting
  of three), replica 1 marks none, replica 2 all."""
  aligned = np.ones(10, bool)
  aligned[:2] = False
  marked = np.zeros((3, 10), np.int32)
  marked[0, [0, 2, 3]] = 1
  marked[2] = 1
  got = methods.base.split_against_bias(marked, aligned)
  assert got["train_conflicting_share"] == pytest.approx(0.2)
  r0, r1, r2 = got["replicas"]
  assert r0 == pytest.approx({"marked_share": 0.3, "conflicting_in_marked": 1 / 3,
                              "conflicting_in_rest": 1 / 7, "conflicting_marked": 0.5})
  assert r1["marked_share"] == 0 and r1["conflicting_in_marked"] is None
  assert r1["conflicting_marked"] == 0 and r1["conflicting_in_rest"] == pytest.approx(0.2)
  assert r2["conflicting_in_rest"] is None and r2["conflicting_marked"] == 1


def test_the_report_cell_averages_the_shares_that_exist():
  """Replica means over the shares that are not None; a share None in every replica is n/a."""
  aligned = np.ones(10, bool)
  aligned[:2] = False
  marked = np.zeros((2, 10), np.int32)
  marked[0, [0, 2, 3]] = 1  # Replica 1 marks nothing: its conflicting_in_marked is None.
  split = methods.base.split_against_bias(marked, aligned)
  cell = sections._inferred_cell({"status": "done", "inferred_split": split})
  assert cell == ("15.0% of train; conflicting: 33.3% of them, 17.14% of the rest "
                  "(train 20.00%); 25% of all conflicting")
  none = methods.base.split_against_bias(np.zeros((2, 10), np.int32), aligned)
  assert "conflicting: n/a of them" in sections._inferred_cell(
      {"status": "done", "inferred_split": none})


def test_a_jtt_run_sets_its_error_set_against_the_bias(reference, tmp_path):
  """The loop writes inferred_split.json of the error set it trains with; ERM writes none."""
  ref, _ = reference
  c = tiny_config("jtt", num_seeds=2, lam=2.0, reference=str(ref))
  with c.unlocked():
    c.train.epochs = 1
  loop.train_and_evaluate(c, tmp_path / "jtt")
  split = train_split(c)
  errors = runs.load_predictions(ref)["train"] != split["labels"][None]
  got = json.loads((tmp_path / "jtt" / runs.INFERRED_SPLIT_FILE).read_text())
  assert got == methods.base.split_against_bias(errors, split["aligned"])
  assert [r["marked_share"] for r in got["replicas"]] == pytest.approx(errors.mean(1))
  assert not (ref / runs.INFERRED_SPLIT_FILE).exists()
  # A run trained before runs wrote the file gets the same one from its reference, once.
  (tmp_path / "jtt" / runs.INFERRED_SPLIT_FILE).unlink()
  assert loop.inferred_split_of_finished(tmp_path / "jtt")
  assert json.loads((tmp_path / "jtt" / runs.INFERRED_SPLIT_FILE).read_text()) == got
  assert not loop.inferred_split_of_finished(tmp_path / "jtt")
  assert not loop.inferred_split_of_finished(ref)  # ERM singles nothing out.


def jtt_pool_case(grid=(2.0, 3.0)):
  """12 train rows, rows 1, 4, 5, 9 and 10 errors of the one seed's reference: the config
  (batch 4, so an epoch is 3 steps, 12 items) and epoch_pool's (pool, sizes)."""
  c = tiny_config("jtt", grid=grid, lock=False, reference="unused")
  c.train.batch_size = 4
  errors = np.zeros(12, bool)
  errors[[1, 4, 5, 9, 10]] = True
  reps = runs.replicas(c)
  return c, errors, jtt.epoch_pool(c, None, {"errors": np.tile(errors, (len(reps), 1))}, reps)


def test_jtt_pool_repeats_each_error_lambda_up_times():
  c, errors, (pool, sizes) = jtt_pool_case()
  assert pool.dtype == np.int32 and sizes.tolist() == [12 + 5 * 1, 12 + 5 * 2]
  assert pool.shape == (2, 22)
  for r, lam in enumerate((2, 3)):  # Each replica its own lambda_up.
    counts = np.bincount(pool[r, :sizes[r]], minlength=12)
    np.testing.assert_array_equal(counts, np.where(errors, lam, 1))
  with pytest.raises(ValueError, match="integer >= 1"):
    jtt_pool_case(grid=(2.5,))
  with pytest.raises(ValueError, match="integer >= 1"):
    jtt.check(tiny_config("jtt", grid=(1.0, 2.5), reference="x"), settings={})


def test_jtt_stream_passes_are_permutations_of_the_pool():
  """Epochs of N // batch steps cross passes: the stream's items [p * M, (p + 1) * M) are a
  permutation of the pool (M its size), each pass in its own order."""
  c, _, (pool, sizes) = jtt_pool_case()
  stream = np.concatenate([np.asarray(loop.epoch_orders(c, e, 12, 3, pool=(pool, sizes)))
                           .reshape(2, -1) for e in range(1, 8)], axis=1)  # 84 items each.
  for r in range(2):
    m = int(sizes[r])
    want = np.sort(pool[r, :m])
    passes = [stream[r, p * m:(p + 1) * m] for p in range(84 // m)]
    for items in passes:
      np.testing.assert_array_equal(np.sort(items), want)
    assert not np.array_equal(passes[0], passes[1])
  # A replica's stream is that of a run of its own (the other replica's pool is wider).
  single, _, single_pool = jtt_pool_case(grid=(2.0,))
  np.testing.assert_array_equal(
      loop.epoch_orders(single, 2, 12, 3, pool=single_pool)[0],
      loop.epoch_orders(c, 2, 12, 3, pool=(pool, sizes))[0])


def test_jtt_refuses_a_mismatched_reference(reference, tmp_path):
  ref, _ = reference
  c = tiny_config("jtt", seed=0, num_seeds=3, lam=4.0, reference=str(ref))
  with pytest.raises(ValueError, match=r"no replica with seed 2 \(its seeds: 0, 1\)"):
    reference_lib.load(c)
  c = tiny_config("jtt", lam=4.0, lock=False, reference=str(ref))
  c.data.rho_train = 0.9
  with pytest.raises(ValueError, match=r"other data \(rho_train: 0.95 \(reference\) vs 0.9"):
    reference_lib.load(c)
  with pytest.raises(ValueError, match="is not a training workdir"):
    reference_lib.load(tiny_config("jtt", lam=4.0, reference=str(tmp_path)))
  with pytest.raises(ValueError, match="needs a reference run: set config.loss.settings.ref"):
    runs.check_config(tiny_config("jtt", lam=4.0))
  with pytest.raises(ValueError, match="lambda_up, an integer >= 1"):
    runs.check_config(tiny_config("jtt", lam=0.5, reference=str(ref)))
  # A missing reference fails before anything is written.
  c = tiny_config("jtt", lam=4.0, reference=str(tmp_path / "nope"))
  with pytest.raises(ValueError, match="nope/config.json not found"):
    loop.train_and_evaluate(c, tmp_path / "run")
  assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- LfF

def test_gce_value_and_gradient_equal_their_closed_forms():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(5, 4)).astype(np.float32) * 2
  y = np.array([0, 3, 1, 1, 2])
  q = 0.7
  p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  p_y = p[np.arange(5), y]
  gce = lambda z: lff.generalized_cross_entropy(logits=z, labels=jnp.asarray(y), q=q,
                                                reduction="sum")
  assert float(gce(jnp.asarray(z))) == pytest.approx(np.sum((1 - p_y ** q) / q), rel=1e-5)
  # d/dz (1 - p_y^q) / q = -p_y^(q-1) dp_y/dz = p_y^q (p - onehot_y).
  want = p_y[:, None] ** q * (p - np.eye(4)[y])
  np.testing.assert_allclose(jax.grad(gce)(jnp.asarray(z)), want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(jax.jit(jax.grad(gce))(jnp.asarray(z)), want, rtol=1e-5, atol=1e-7)
  # q -> 0 is CE.
  small = lff.generalized_cross_entropy(logits=jnp.asarray(z), labels=jnp.asarray(y), q=1e-4)
  assert float(small) == pytest.approx(np.mean(-np.log(p_y)), rel=1e-3)


def test_lff_averages_and_weights_by_hand():
  ema, seen = jnp.zeros(4), jnp.zeros(4, bool)
  ema, seen = lff.ema_update(ema, seen, jnp.array([0, 2]), jnp.array([2.0, 4.0]), 0.7)
  np.testing.assert_allclose(ema, [2.0, 0.0, 4.0, 0.0])  # The first update sets the value.
  ema, seen = lff.ema_update(ema, seen, jnp.array([2, 3]), jnp.array([1.0, 3.0]), 0.7)
  np.testing.assert_allclose(ema, [2.0, 0.0, 0.7 * 4 + 0.3 * 1, 3.0], rtol=1e-6)
  np.testing.assert_array_equal(seen, [True, False, True, True])
  # Normalized by each class's largest average: classes [0, 0, 1, 1].
  ema_b, ema_d = jnp.array([2.0, 4.0, 1.0, 0.5]), jnp.array([1.0, 1.0, 3.0, 1.0])
  labels, rows = jnp.array([0, 0, 1, 1]), jnp.array([0, 3])
  lb = lff.class_normalized(ema_b, labels, rows, 2)
  ld = lff.class_normalized(ema_d, labels, rows, 2)
  np.testing.assert_allclose(lb, [2 / 4, 0.5 / 1])
  np.testing.assert_allclose(ld, [1 / 1, 1 / 3])
  np.testing.assert_allclose(lff.difficulty_weights(lb, ld), [0.5 / 1.5, 0.5 / (0.5 + 1 / 3)],
                             rtol=1e-6)


def test_lff_trains_both_models_and_weights_the_debiased_update():
  c = tiny_config("lff", lock=False)
  c.model.name = "lff_mlp"  # Small and quick to compile.
  c.lock()
  model, tx, _ = runs.build(c)
  plain = models.get_model("lff_mlp", num_classes=10)
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  assert set(params) == set(models.init_params(plain, jax.random.key(0), (28, 28, 3))) | {"biased"}
  split = train_split(c)
  x = jnp.asarray(split["images"][:8], jnp.float32)
  debiased = {k: v for k, v in params.items() if k != "biased"}
  for a, b in zip(jax.tree_util.tree_leaves(debiased),  # A seed starts it as the plain model.
                  jax.tree_util.tree_leaves(models.init_params(plain, jax.random.key(0),
                                                               (28, 28, 3)))):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(model.apply({"params": params}, x),
                                plain.apply({"params": debiased}, x))  # Evaluated: debiased.
  assert not np.allclose(model.apply({"params": params}, x),
                         plain.apply({"params": params["biased"]}, x))

  # One step from averages that make the weights differ by example.
  rows = np.arange(8)
  y = jnp.asarray(split["labels"][rows])
  extra = lff.init_extra(c, split, [0], settings=methods.settings_of(c), reference=None)
  extra = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), extra)
  rng = np.random.default_rng(1)
  extra.update(ema_b=jnp.asarray(rng.uniform(0.1, 3, 128), jnp.float32),
               ema_d=jnp.asarray(rng.uniform(0.1, 3, 128), jnp.float32),
               seen=jnp.ones(128, bool))
  batch = {"images": x, "labels": y, "index": jnp.asarray(rows)}
  settings = methods.settings_of(c)
  grads, new_extra = jax.grad(
      lambda p: lff.loss(model=model, params=p, batch=batch, lam=0.0, extra=extra, step=0,
                         warmup_steps=0, settings=settings)[::2], has_aux=True)(params)
  ce = lambda p: losses.cross_entropy(logits=plain.apply({"params": p}, x), labels=y,
                                      reduction="none")
  # The averages and weights, by hand.
  ema_b = 0.7 * extra["ema_b"][rows] + 0.3 * ce(params["biased"])
  ema_d = 0.7 * extra["ema_d"][rows] + 0.3 * ce(debiased)
  np.testing.assert_allclose(new_extra["ema_b"][rows], ema_b, rtol=1e-5)
  np.testing.assert_allclose(new_extra["ema_d"][8:], extra["ema_d"][8:])
  labels_all = np.asarray(split["labels"])
  peak = lambda e: np.array([np.max(np.asarray(e)[labels_all == k]) for k in range(10)])
  lb = ema_b / peak(new_extra["ema_b"])[np.asarray(y)]
  ld = ema_d / peak(new_extra["ema_d"])[np.asarray(y)]
  w = lb / (lb + ld + 1e-8)
  assert np.ptp(np.asarray(w)) > 0.1
  want_d = jax.grad(lambda p: jnp.mean(w * ce(p)))(debiased)
  want_b = jax.grad(lambda p: lff.generalized_cross_entropy(
      logits=plain.apply({"params": p}, x), labels=y, q=0.7))(params["biased"])
  unweighted = jax.grad(lambda p: jnp.mean(ce(p)))(debiased)
  for name in debiased:
    for leaf in ("kernel", "bias"):
      np.testing.assert_allclose(grads[name][leaf], want_d[name][leaf], rtol=2e-4, atol=1e-7)
      np.testing.assert_allclose(grads["biased"][name][leaf], want_b[name][leaf], rtol=2e-4,
                                 atol=1e-7)
  assert not np.allclose(grads["Dense_3"]["kernel"], unweighted["Dense_3"]["kernel"],
                         rtol=0.05)
  # Through the train step, both models move.
  state = runs.init_state(c, model, tx, {k: v[None] for k, v in extra.items()})
  state = jax.tree_util.tree_map(lambda a: a[0], state)
  moved, _ = step_lib.batch_step(state, batch, jnp.float32(0.0), model=model,
                                 method=methods.get("lff"), settings=settings)
  for part in (lambda p: p["Dense_3"], lambda p: p["biased"]["Dense_3"]):
    assert not np.allclose(part(moved.params)["kernel"], part(state.params)["kernel"],
                           rtol=0, atol=1e-7)
  assert int(moved.extra["seen"].sum()) == 128


def test_lff_settings_checked():
  with pytest.raises(ValueError, match="GCE's exponent lies in"):
    runs.check_config(tiny_config("lff", q=0.0))
  with pytest.raises(ValueError, match="decay lies in"):
    runs.check_config(tiny_config("lff", alpha=1.0))


# ---------------------------------------------------------------- EIIL

def spurious_case(n=400, seed=0):
  """(logits, labels, follows): a reference that predicts a spurious attribute; half the
  examples' labels agree with it (`follows`), half do not."""
  rng = np.random.default_rng(seed)
  attr = rng.integers(0, 10, n)
  follows = np.arange(n) % 2 == 0
  labels = np.where(follows, attr, (attr + rng.integers(1, 10, n)) % 10)
  logits = 3.0 * np.eye(10)[attr] + 0.3 * rng.normal(size=(n, 10))
  return jnp.asarray(logits, jnp.float32), jnp.asarray(labels, jnp.int32), follows


def hard_penalty(logits, labels, envs):
  return np.mean([float(irm.irm_penalty(logits, labels, envs == e)) for e in (0, 1)])


def test_environment_inference_separates_a_spurious_rule():
  logits, labels, follows = spurious_case()
  envs = np.asarray(eiil.infer_environments(logits, labels, steps=2000, lr=0.01,
                                            key=jax.random.key(0)))
  agreement = np.mean(envs == follows)
  assert max(agreement, 1 - agreement) > 0.95
  rng = np.random.default_rng(0)
  for _ in range(5):
    assert hard_penalty(logits, labels, envs) > 3 * hard_penalty(
        logits, labels, rng.random(len(follows)) < 0.5)
  # The per-example scale gradient is d/dw CE(w z, y) at 1 = p . z - z_y.
  p = jax.nn.softmax(logits)
  want = np.sum(p * logits, 1) - np.asarray(logits)[np.arange(400), labels]
  np.testing.assert_allclose(eiil.scale_gradients(logits, labels), want, rtol=1e-5, atol=1e-6)


def test_eiil_environments_from_the_reference(reference):
  ref, _ = reference
  c = tiny_config("eiil", num_seeds=2, lam=2.0, grid=(2.0, 4.0), reference=str(ref),
                  ei_steps=300, ei_lr=0.01)
  split = train_split(c)
  envs = np.asarray(reference_lib.init_extra(c, split)["envs"])
  assert envs.shape == (4, 128) and set(np.unique(envs)) == {0, 1}
  np.testing.assert_array_equal(envs[2:], envs[:2])  # Grid points of a seed share them.
  model, params, _ = runs.load_run(ref, replica=None)
  for r in range(2):
    z = model.apply({"params": jax.tree_util.tree_map(lambda a, r=r: a[r], params)},
                    jnp.asarray(split["images"], jnp.float32))
    want = eiil.infer_environments(z, jnp.asarray(split["labels"]), steps=300, lr=0.01,
                                   key=jax.random.fold_in(jax.random.key(r), 3))
    np.testing.assert_array_equal(envs[r], np.asarray(want, np.int32))
  with pytest.raises(ValueError, match="ei_steps=0"):
    runs.check_config(tiny_config("eiil", reference=str(ref), ei_steps=0))


def test_eiil_trains_irm_on_the_inferred_environments():
  logits, labels, follows = spurious_case(n=16)
  model = FixedLogits(np.asarray(logits))
  envs = jnp.asarray(follows.astype(np.int32))
  batch = {"images": jnp.zeros((16, 28, 28, 3)), "labels": labels, "index": jnp.arange(16)}
  kw = dict(model=model, params={}, batch=batch, lam=5.0, extra={"envs": envs}, step=3,
            warmup_steps=2, settings=dict(eiil.DEFAULTS))
  value, aux, _ = eiil.loss(**kw)
  ce = losses.cross_entropy(logits=logits, labels=labels, reduction="none")
  risks = [float(jnp.mean(ce[envs == e])) for e in (0, 1)]
  penalty = hard_penalty(logits, labels, np.asarray(envs))
  assert float(aux["penalty"]) == pytest.approx(penalty, rel=1e-5)
  assert float(value) == pytest.approx((np.mean(risks) + 5.0 * penalty) / 5.0, rel=1e-5)
  value, _, _ = eiil.loss(**{**kw, "step": 1})  # Before warmup ends: weight 1.
  assert float(value) == pytest.approx(np.mean(risks) + penalty, rel=1e-5)


class FixedLogits:
  """A stand-in model whose apply returns fixed logits."""

  def __init__(self, logits):
    self.logits = jnp.asarray(logits)

  def apply(self, variables, x):
    del variables, x
    return self.logits
