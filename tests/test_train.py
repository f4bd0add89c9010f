"""The training loop on the tiny config: learning, resume, NaN, workdir and config checks."""

import functools
import gc
import json
import os
import pathlib
import shutil
import struct

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ccmnist import eval as eval_lib
from ccmnist import models
from ccmnist.data import splits as splits_lib
from ccmnist.train import loop
from ccmnist.train import methods
from ccmnist.train import optim
from ccmnist.train import runs
from ccmnist.train import step as step_lib
from ccmnist.util import workdir as workdir_lib
from configs import cheater
from configs import color_gradient_penalty
from configs import counterfactual
from configs import erm_adam
from configs import gradient_penalty


def tiny(**overrides):
  """The tiny cheater config (locked) with `overrides` like {'train.epochs': 1}."""
  c = cheater.get_config("tiny")
  c.update_from_flattened_dict(overrides)
  return c


def with_lr_grid(c, lr_grid):
  """Config `c` (locked) with config.optim.lr_grid, a field only lr-grid runs have."""
  with c.unlocked():
    c.optim.lr_grid = tuple(lr_grid)
  return c


def with_eval_every(c, every):
  """Config `c` (locked) with config.train.eval_every_epochs, a field the benchmark's runs add."""
  with c.unlocked():
    c.train.eval_every_epochs = every
  return c


def params_close(a, b, **kw):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


pytestmark = pytest.mark.usefixtures("compilation_cache")


@pytest.fixture(scope="module", name="straight")
def fixture_straight(tmp_path_factory):
  """A tiny run of 2 epochs, uninterrupted: (workdir, results)."""
  workdir = tmp_path_factory.mktemp("straight")
  return workdir, loop.train_and_evaluate(tiny(), workdir)


@pytest.mark.parametrize("module,arg", [
    (cheater, None), (cheater, "quick"), (gradient_penalty, None), (gradient_penalty, "quick"),
    (color_gradient_penalty, None), (counterfactual, None), (counterfactual, "quick"),
    (erm_adam, None), (erm_adam, "momentum"), (erm_adam, "momentum,quick"),
    (erm_adam, "optimizer=momentum,size=tiny"), (cheater, "lr_grid,quick"), (cheater, "long")])
def test_configs_are_valid_and_locked(module, arg):
  c = module.get_config(arg)
  runs.check_config(c)
  assert c.is_locked
  with pytest.raises(AttributeError):
    c.train.no_such_field = 1


def test_study_settings():
  gp = gradient_penalty.get_config(None)
  assert (gp.loss.name, gp.loss.lam, gp.loss.grad_scale, gp.data.noise_sigma) == (
      "gradient_penalty", 0.1, "unit", 0.0)
  assert (gp.optim.name, gp.optim.lr, gp.train.epochs, gp.train.batch_size) == ("sgd", 1e-3, 4, 64)
  assert color_gradient_penalty.get_config("full").loss.name == "color_gradient_penalty"
  cf = counterfactual.get_config("full")
  assert (cf.loss.name, cf.loss.lam, cf.loss.warmup_epochs, cf.train.epochs) == (
      "consistency", 0.5, 2, 10)
  assert erm_adam.get_config(None).optim.name == "adam"
  mom = erm_adam.get_config("momentum")
  assert (mom.optim.name, mom.optim.momentum, mom.optim.lr) == ("sgd", 0.9, 1e-2)
  assert erm_adam.get_config("momentum,quick").data.train_size == 20_000
  with pytest.raises(ValueError, match="variant"):
    erm_adam.get_config("momentum,huge")


@pytest.mark.parametrize("size", ["full", "quick", "tiny"])
def test_step_size_runs_differ_from_the_cheater_in_lr_and_epochs_alone(size):
  base = cheater.get_config(size).to_dict()
  grid, long = (cheater.get_config(f"{run},{size}").to_dict() for run in ("lr_grid", "long"))
  assert grid["optim"].pop("lr_grid") == (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
  assert grid["optim"]["lr"] == long["optim"]["lr"] == 1e-3  # The study's, in every size.
  assert long["train"]["epochs"] == 4 * base["train"]["epochs"]
  for run in (grid, long):
    run["optim"]["lr"], run["train"]["epochs"] = base["optim"]["lr"], base["train"]["epochs"]
    assert run == base
  # The adaptive controls train the cheater's epochs too (matched epochs).
  for arg in (size, f"momentum,{size}"):
    assert erm_adam.get_config(arg).train.epochs == base["train"]["epochs"]


# Every registered method whose batch is images, labels and partners, and which keeps no state.
STATELESS = [n for n, m in methods.METHODS.items() if m.kind == "train"
             and set(m.batch_keys) <= {"images", "labels", "cf_images"}
             and m.init_extra is methods.base.no_extra]


def optim_cfg(name, *, wd, momentum=0.0, lr=0.1):
  c = tiny(**{"optim.name": name, "optim.lr": lr, "optim.momentum": momentum,
              "optim.weight_decay": wd})
  return c.optim


def optim_steps(tx, w0, grad_fn, n):
  """n steps of tx from w0 (a float32 scalar) on grad_fn: the params after each."""
  w, state, out = jnp.float32(w0), tx.init(jnp.float32(w0)), []
  for _ in range(n):
    updates, state = tx.update(grad_fn(w), state, w)
    w = optax.apply_updates(w, updates)
    out.append(float(w))
  return out


# The loss 0.5 * (w - 3.1)^2 from w = 3: its gradient is w - 3.1 = -0.1, so without decay every
# optimizer moves w up; with PyTorch's coupled decay wd = 0.1 the gradient it steps on is
# -0.1 + 0.1 * 3 = 0.2, so w moves down.
QUAD_GRAD = lambda w: w - 3.1


def test_optim_weight_decay_is_pytorchs_coupled_l2():
  """sgd, sgd with momentum and adam take weight_decay as torch.optim.SGD / Adam do."""
  wd, lr = 0.1, 0.1
  # SGD: w1 = 3 - lr * (-0.1 + 0.3) = 2.98; w2 = 2.98 - lr * (2.98 - 3.1 + 0.298) = 2.9622.
  np.testing.assert_allclose(optim_steps(optim.make_optimizer(optim_cfg("sgd", wd=wd), 2), 3.0,
                                         QUAD_GRAD, 2), [2.98, 2.9622], rtol=1e-6)
  # Momentum 0.9 (dampening 0): buf1 = 0.2, w1 = 2.98; d2 = 2.98 - 3.1 + 0.298 = 0.178,
  # buf2 = 0.9 * 0.2 + 0.178 = 0.358, w2 = 2.98 - 0.0358 = 2.9442.
  np.testing.assert_allclose(optim_steps(optim.make_optimizer(
      optim_cfg("sgd", wd=wd, momentum=0.9), 2), 3.0, QUAD_GRAD, 2), [2.98, 2.9442], rtol=1e-6)
  # Adam (b1 0.9, b2 0.999, eps 1e-8): step 1 g = 0.2, m = 0.02, v = 4e-5, m^ = 0.2, v^ = 0.04,
  # w1 = 3 - lr * 0.2 / (0.2 + eps) = 2.9. Step 2: g = 2.9 - 3.1 + 0.29 = 0.09,
  # m = 0.018 + 0.009 = 0.027, v = 0.999 * 4e-5 + 0.001 * 0.0081 = 4.8060e-5,
  # m^ = 0.027 / 0.19, v^ = 4.8060e-5 / 0.001999; w2 = w1 - lr * m^ / (sqrt(v^) + eps).
  m_hat, v_hat = 0.027 / 0.19, (0.999 * 4e-5 + 0.001 * 0.0081) / (1 - 0.999 ** 2)
  w2 = 2.9 - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
  np.testing.assert_allclose(optim_steps(optim.make_optimizer(optim_cfg("adam", wd=wd), 2), 3.0,
                                         QUAD_GRAD, 2), [2.9, w2], rtol=1e-5)


@pytest.mark.parametrize("name,momentum,plain", [
    ("sgd", 0.0, lambda lr: optax.sgd(lr)), ("sgd", 0.9, lambda lr: optax.sgd(lr, momentum=0.9)),
    ("adam", 0.0, optax.adam)])
def test_optim_without_weight_decay_is_unchanged(name, momentum, plain):
  """weight_decay 0: the same optimizer state and bit-identical updates as before it applied."""
  tx = optim.make_optimizer(optim_cfg(name, wd=0.0, momentum=momentum), 3)
  ref = plain(0.1)
  assert (jax.tree_util.tree_structure(tx.init(jnp.float32(3.0)))
          == jax.tree_util.tree_structure(ref.init(jnp.float32(3.0))))
  assert optim_steps(tx, 3.0, QUAD_GRAD, 3) == optim_steps(ref, 3.0, QUAD_GRAD, 3)
  assert optim_steps(tx, 3.0, QUAD_GRAD, 1) != optim_steps(
      optim.make_optimizer(optim_cfg(name, wd=0.1, momentum=momentum), 3), 3.0, QUAD_GRAD, 1)


@pytest.mark.parametrize("loss_name", STATELESS)
def test_train_step_lowers_loss(loss_name):
  """A few SGD steps on one fixed batch lower that batch's loss."""
  c = tiny(**{"loss.name": loss_name, "loss.lam": 0.1, "optim.lr": 0.05})
  model = models.get_model(c.model.name, num_classes=10, conv_impl=c.model.conv_impl)
  tx = optim.make_optimizer(c.optim, 10)
  state = runs.init_state(c, model, tx)
  rng = np.random.default_rng(0)
  data = {"images": jnp.asarray(rng.integers(0, 256, (16, 28, 28, 3), dtype=np.uint8)),
          "labels": jnp.asarray(np.arange(16) % 10, jnp.int32),
          "cf_images": jnp.asarray(rng.integers(0, 256, (16, 28, 28, 3), dtype=np.uint8))}
  order = jnp.arange(16)[None, None, :]  # [K=1, steps_per_epoch=1, batch=16]: the same batch.
  fn = step_lib.make_train_step(**runs.step_kwargs(c, model, 1))
  lam = jnp.asarray([0.1])
  first = None
  for _ in range(5):
    state, m = fn(state, data, order, lam)
    first = float(m["loss"][0]) if first is None else first
  assert np.isfinite(float(m["loss"][0]))
  assert float(m["loss"][0]) < first


def test_grad_norm_off_drops_the_metric_and_changes_no_update():
  """train.grad_norm False (the benchmark's runs) leaves the metric out; the step is the same,
  and with it on the metric is the update's global gradient norm, computed by hand for SGD."""
  c = tiny(**{"optim.lr": 0.5})
  model = models.get_model(c.model.name, num_classes=10, conv_impl=c.model.conv_impl)
  tx = optim.make_optimizer(c.optim, 10)
  state0 = runs.init_state(c, model, tx)
  rng = np.random.default_rng(2)
  data = {"images": jnp.asarray(rng.integers(0, 256, (8, 28, 28, 3), dtype=np.uint8)),
          "labels": jnp.asarray(np.arange(8) % 10, jnp.int32)}
  order, lam, out = jnp.arange(8)[None, None, :], jnp.asarray([0.0]), {}
  for on in (True, False):
    with c.unlocked():
      c.train.grad_norm = on
    fn = step_lib.make_train_step(**runs.step_kwargs(c, model, 1))
    out[on] = fn(jax.tree_util.tree_map(jnp.copy, state0), data, order, lam)
  (s_on, m_on), (s_off, m_off) = out[True], out[False]
  assert "grad_norm" in m_on and "grad_norm" not in m_off
  assert set(m_on) - {"grad_norm"} == set(m_off)
  moved = [np.asarray(a - b).ravel() for a, b in zip(jax.tree_util.tree_leaves(state0.params),
                                                      jax.tree_util.tree_leaves(s_on.params))]
  np.testing.assert_allclose(float(m_on["grad_norm"][0]),
                             np.linalg.norm(np.concatenate(moved)) / 0.5, rtol=1e-4)
  for a, b in zip(jax.tree_util.tree_leaves(s_on.params), jax.tree_util.tree_leaves(s_off.params)):
    np.testing.assert_array_equal(a, b)


def test_num_passes_keeps_each_pass_under_the_limit(monkeypatch):
  monkeypatch.setattr(step_lib, "PASS_IMAGES", 64)
  # (batch, images per example) -> passes: the fewest equal slices of <= 64 images.
  for args, want in (((64, 1), 1), ((64, 2), 2), ((256, 1), 4), ((100, 1), 2), ((96, 2), 3),
                     ((65, 1), 5), ((67, 1), 67)):
    assert step_lib.num_passes(*args) == want, args
  monkeypatch.setattr(step_lib, "PASS_IMAGES", 0)
  assert step_lib.num_passes(256, 2) == 1


def test_num_passes_follows_the_model_on_cpu_unless_pass_images_is_set(monkeypatch):
  """On XLA:CPU a conv net's batch of 256 runs as passes of 64, an MLP's whole; the global
  setting overrides both."""
  assert jax.default_backend() == "cpu"
  cnn = models.get_model("cheater", num_classes=10)
  mlps = [models.get_model(name, num_classes=10) for name in ("mlp", "lff_mlp")]
  assert step_lib.num_passes(256, 1, cnn) == 4 and step_lib.num_passes(256, 1) == 4
  assert [step_lib.num_passes(256, 1, m) for m in mlps] == [1, 1]
  monkeypatch.setattr(step_lib, "PASS_IMAGES", 128)
  assert [step_lib.num_passes(256, 1, m) for m in [cnn, *mlps]] == [2, 2, 2]


def test_layout_sets_the_step_layout_inside_and_restores_it():
  mlp = models.get_model("lff_mlp", num_classes=10)
  with step_lib.layout("scan", 64):
    assert (step_lib.replica_map_of(mlp), step_lib.num_passes(256, 1, mlp)) == ("scan", 4)
  assert (step_lib.replica_map_of(mlp), step_lib.num_passes(256, 1, mlp)) == ("vmap", 1)
  with pytest.raises(KeyError), step_lib.layout("unroll", 0):
    raise KeyError("restored on errors too")
  assert (step_lib.REPLICA_MAP, step_lib.PASS_IMAGES) == (None, None)


@pytest.mark.parametrize("loss_name", ("erm", "gradient_penalty", "consistency"))
def test_step_in_slices_equals_one_pass(loss_name, monkeypatch):
  """A batch computed as 4 slices gives the same loss, metrics and update as one pass."""
  c = tiny(**{"loss.name": loss_name, "loss.lam": 0.5, "optim.lr": 0.05})
  model = models.get_model(c.model.name, num_classes=10, conv_impl=c.model.conv_impl)
  state0 = runs.init_state(c, model, optim.make_optimizer(c.optim, 10))
  rng = np.random.default_rng(1)
  data = {"images": jnp.asarray(rng.integers(0, 256, (16, 28, 28, 3), dtype=np.uint8)),
          "labels": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
          "cf_images": jnp.asarray(rng.integers(0, 256, (16, 28, 28, 3), dtype=np.uint8))}
  order = jnp.arange(16)[None, None, :]
  out = {}
  for limit in (0, 8 if loss_name == "consistency" else 4):
    monkeypatch.setattr(step_lib, "PASS_IMAGES", limit)
    fn = step_lib.make_train_step(**runs.step_kwargs(c, model, 1))
    state = jax.tree_util.tree_map(jnp.copy, state0)  # The step donates its state.
    out[limit] = fn(state, data, order, jnp.asarray([0.5]))
  (s_one, m_one), (s_sliced, m_sliced) = out.values()
  for k in ("loss", "ce", "penalty", "accuracy", "grad_norm"):
    np.testing.assert_allclose(m_sliced[k], m_one[k], rtol=2e-5, atol=1e-7, err_msg=k)
  for a, b in zip(jax.tree_util.tree_leaves(s_sliced.params),
                  jax.tree_util.tree_leaves(s_one.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_run_writes_outputs(straight):
  workdir, results = straight
  assert {"config.json", "metrics.jsonl", "results.json", "checkpoints"} <= {
      p.name for p in workdir.iterdir()}
  rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in rows] == [1, 2]
  acc = json.loads((workdir / "results.json").read_text())["accuracy"]
  assert acc == results["accuracy"]
  for split in ("train", "test_easy", "test_hard"):
    assert 0.0 <= acc[split] <= 1.0
  written = json.loads((workdir / "config.json").read_text())
  assert written == json.loads(workdir_lib.config_json(tiny()))


def test_resume_equals_uninterrupted(straight, tmp_path, monkeypatch):
  """Killed right after epoch 1's checkpoint, then rerun: same params as 2 epochs straight."""
  real_orders = loop.epoch_orders

  class Killed(Exception):
    pass

  def orders_then_die(config, epoch, *args):
    if epoch == 2:
      raise Killed()
    return real_orders(config, epoch, *args)

  monkeypatch.setattr(loop, "epoch_orders", orders_then_die)
  with pytest.raises(Killed):
    loop.train_and_evaluate(tiny(), tmp_path)
  assert not (tmp_path / "results.json").exists()
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
  monkeypatch.setattr(loop, "epoch_orders", real_orders)
  resumed = loop.train_and_evaluate(tiny(), tmp_path)

  _, p_straight, _ = runs.load_run(straight[0])
  _, p_resumed, _ = runs.load_run(tmp_path)
  params_close(p_straight, p_resumed, rtol=0, atol=0)
  assert resumed["accuracy"] == straight[1]["accuracy"]
  rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in rows] == [1, 2]


def test_evaluating_every_other_epoch_trains_the_same_run(tmp_path):
  """eval_every_epochs=2 over 3 epochs: accuracies after epochs 2 and 3 only, and the same
  params, metrics and results as evaluating every epoch (evaluation draws no randomness)."""
  every = loop.train_and_evaluate(tiny(**{"train.epochs": 3}), tmp_path / "every")
  sparse = loop.train_and_evaluate(
      with_eval_every(tiny(**{"train.epochs": 3}), 2), tmp_path / "sparse")
  _, p_every, _ = runs.load_run(tmp_path / "every")
  _, p_sparse, _ = runs.load_run(tmp_path / "sparse")
  params_close(p_every, p_sparse, rtol=0, atol=0)
  assert sparse["replicas"] == every["replicas"]
  read = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
  rows_every, rows_sparse = read(tmp_path / "every"), read(tmp_path / "sparse")
  assert [bool(r["accuracy"]) for r in rows_sparse] == [False, True, True]
  for a, b in zip(rows_every, rows_sparse):
    assert a["train_loss"] == b["train_loss"]
    assert not b["accuracy"] or b["accuracy"] == a["accuracy"]
  curves = eval_lib.read_curves(tmp_path / "sparse")
  assert curves["epoch"] == [2, 3]
  assert curves["test_hard"] == [r["accuracy"]["test_hard"][0] for r in rows_every[1:]]


def test_every_evaluated_epoch_keeps_its_predictions_and_checkpoint(tmp_path):
  """eval_every_epochs=2 over 5 epochs: the predictions and params after epochs 2, 4 and 5 are
  kept (where a selection may stop the run); epoch 3's checkpoint is not."""
  loop.train_and_evaluate(with_eval_every(tiny(**{"train.epochs": 5}), 2), tmp_path)
  assert sorted(runs.checkpoint_manager(tmp_path).all_steps()) == [2, 4, 5]
  by_epoch = runs.load_epoch_predictions(tmp_path)
  assert list(by_epoch) == [2, 4, 5]
  final = runs.load_predictions(tmp_path)
  for split, p in final.items():
    np.testing.assert_array_equal(by_epoch[5][split], p)
  labels = splits_lib.get_splits(tiny().data)["test_hard"]["labels"]
  curves = eval_lib.read_curves(tmp_path)
  assert curves["epoch"] == [2, 4, 5]
  for i, epoch in enumerate(curves["epoch"]):  # Each file holds its epoch's logged accuracy.
    assert np.mean(by_epoch[epoch]["test_hard"][0] == labels) == pytest.approx(
        curves["test_hard"][i], abs=1e-4)
  _, p2, _ = runs.load_run(tmp_path, epoch=2)
  _, p5, _ = runs.load_run(tmp_path)
  assert not np.allclose(jax.tree_util.tree_leaves(p2)[0], jax.tree_util.tree_leaves(p5)[0])
  with pytest.raises(ValueError, match=r"keeps no checkpoint of epoch 3 \(it keeps \[2, 4, 5\]"):
    runs.load_run(tmp_path, epoch=3)


def test_eval_every_below_one_refused(tmp_path):
  with pytest.raises(ValueError, match="eval_every_epochs must be >= 1"):
    loop.train_and_evaluate(with_eval_every(tiny(), 0), tmp_path)
  assert not (tmp_path / "config.json").exists()


def copy_run(workdir, to) -> pathlib.Path:
  shutil.copytree(workdir, to)
  return to


def truncate_largest_file(checkpoint: pathlib.Path) -> pathlib.Path:
  """Cuts the largest file of one checkpoint (its array data) to half its size."""
  path = max((p for p in checkpoint.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  os.truncate(path, path.stat().st_size // 2)
  return path


def snapshot(directory: pathlib.Path) -> dict:
  return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# Orbax leaves the failed reads' coroutines unawaited (collected at each test's end, under
# this filter); the error itself is what is checked.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_last_checkpoint_falls_back_to_the_one_before(straight, tmp_path, caplog):
  """Epoch 2's checkpoint truncated: load_run gives epoch 1's params, and a rerun of the
  unfinished run resumes from epoch 1 and ends with the uninterrupted run's params."""
  epoch_1 = copy_run(straight[0], tmp_path / "epoch_1")
  shutil.rmtree(epoch_1 / "checkpoints" / "2")
  _, p_epoch_1, _ = runs.load_run(epoch_1)
  run = copy_run(straight[0], tmp_path / "run")
  truncate_largest_file(run / "checkpoints" / "2")
  _, p_fallback, _ = runs.load_run(run)
  params_close(p_fallback, p_epoch_1, rtol=0, atol=0)
  assert "checkpoints/2 does not restore" in caplog.text

  (run / "results.json").unlink()  # Unfinished: the rerun trains epoch 2 again.
  resumed = loop.train_and_evaluate(tiny(), run)
  _, p_resumed, _ = runs.load_run(run)
  _, p_straight, _ = runs.load_run(straight[0])
  params_close(p_resumed, p_straight, rtol=0, atol=0)
  assert resumed["accuracy"] == straight[1]["accuracy"]
  assert sorted(runs.checkpoint_manager(run).all_steps()) == [1, 2]
  rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in rows] == [1, 2]
  gc.collect()


# Orbax leaves the failed reads' coroutines unawaited (collected at each test's end, under
# this filter); the error itself is what is checked.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_only_checkpoint_says_which_and_how_to_recover(straight, tmp_path):
  run = copy_run(straight[0], tmp_path / "run")
  shutil.rmtree(run / "checkpoints" / "1")
  truncate_largest_file(run / "checkpoints" / "2")
  before = snapshot(run)
  bad = str(run.absolute() / "checkpoints" / "2")
  with pytest.raises(runs.CheckpointError) as e:
    runs.load_run(run)
  message = str(e.value)
  assert "\n" not in message and f"delete {bad} and {run.absolute() / 'results.json'}" in message
  (run / "results.json").unlink()
  before.pop(run / "results.json")
  with pytest.raises(runs.CheckpointError, match=f"Checkpoint {bad} does not restore") as e:
    loop.train_and_evaluate(tiny(), run)
  assert "\n" not in str(e.value) and f"delete {bad} and rerun" in str(e.value)
  assert snapshot(run) == before  # Nothing written, nothing deleted.
  gc.collect()


def test_different_config_refused(straight):
  workdir, _ = straight
  before = (workdir / "config.json").read_text()
  with pytest.raises(workdir_lib.WorkdirConfigError, match="train.epochs"):
    loop.train_and_evaluate(tiny(**{"train.epochs": 3}), workdir)
  assert (workdir / "config.json").read_text() == before


def test_nan_stops_with_step(tmp_path):
  with pytest.raises(loop.NonFiniteLossError, match=r"at step \d+"):
    loop.train_and_evaluate(tiny(**{"optim.lr": 1e12, "train.epochs": 1}), tmp_path)
  assert not (tmp_path / "results.json").exists()
  assert runs.checkpoint_manager(tmp_path).latest_step() is None


@pytest.mark.parametrize("path,value,match", [
    ("loss.name", "l2", "Unknown loss"), ("model.name", "resnet", "Unknown model"),
    ("optim.name", "lion", "Unknown optimizer"), ("data.rho_train", 1.5, "rho"),
    ("data.rho_test_hard", -0.1, "rho"), ("loss.grad_scale", "x", "grad_scale"),
    ("num_seeds", 0, "num_seeds"), ("train.batch_size", 4096, "batch_size")])
def test_bad_config_raises_before_writing(tmp_path, path, value, match):
  with pytest.raises(ValueError, match=match):
    loop.train_and_evaluate(tiny(**{path: value}), tmp_path)
  assert not (tmp_path / "config.json").exists()


def test_replica_equals_single_seed_run(straight, tmp_path):
  """Replica i of a num_seeds=2 run is the single run with seed i (replica 0: `straight`)."""
  both = loop.train_and_evaluate(tiny(num_seeds=2), tmp_path / "k2")
  single = loop.train_and_evaluate(tiny(seed=1), tmp_path / "s1")
  _, p_both, _ = runs.load_run(tmp_path / "k2", replica=None)
  for seed, (workdir, results) in enumerate((straight, (tmp_path / "s1", single))):
    _, p_single, _ = runs.load_run(workdir)
    params_close(jax.tree_util.tree_map(lambda x, s=seed: x[s], p_both), p_single,
                 rtol=1e-4, atol=1e-5)
    for split, acc in results["accuracy"].items():
      assert both["replicas"][seed]["accuracy"][split] == pytest.approx(acc, abs=0.02)
  assert [r["seed"] for r in both["replicas"]] == [0, 1]


def test_lr_grid_replicas_equal_single_runs_at_each_lr(straight, tmp_path):
  """Replica (lr point g, seed s) of a 2-lr x 2-seed grid trains as the single run at that lr
  and seed (lr 1e-3, seed 0: `straight`); results.json says each point's lr."""
  grid = loop.train_and_evaluate(with_lr_grid(tiny(num_seeds=2), (1e-3, 1e-2)), tmp_path / "g")
  assert [(r["lr"], r["seed"]) for r in grid["replicas"]] == [
      (1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)]
  assert [p["lr"] for p in grid["grid"]] == [1e-3, 1e-2] and grid["headline_lr"] == 1e-3
  _, p_grid, config = runs.load_run(tmp_path / "g", replica=None)
  assert runs.replica_of(config, 0.0, 1, lr=1e-2) == 3
  pick = lambda r: jax.tree_util.tree_map(lambda x: x[r], p_grid)
  for r in grid["replicas"]:
    workdir = tmp_path / f"lr{r['lr']}_seed{r['seed']}"
    if (r["lr"], r["seed"]) == (1e-3, 0):
      workdir, single = straight
    else:
      single = loop.train_and_evaluate(tiny(seed=r["seed"], **{"optim.lr": r["lr"]}), workdir)
    params_close(pick(r["replica"]), runs.load_run(workdir)[1], rtol=1e-5, atol=1e-6)
    g, s = divmod(r["replica"], 2)
    for split, acc in single["accuracy"].items():
      assert grid["grid"][g]["accuracy"][split]["values"][s] == pytest.approx(acc, abs=1e-6)
  with pytest.raises(AssertionError):  # The lr is used: 1e-2 steps away from 1e-3.
    params_close(pick(0), pick(2), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("overrides,lr_grid,match", [
    ({"loss.lam_grid": (0.0, 0.5)}, (1e-3, 1e-2), "both set"),
    ({}, (1e-3, 0.0), "learning rates must be > 0"),
    ({}, (-1e-3,), "learning rates must be > 0")])
def test_bad_lr_grid_raises_before_writing(tmp_path, overrides, lr_grid, match):
  with pytest.raises(ValueError, match=match):
    loop.train_and_evaluate(with_lr_grid(tiny(**overrides), lr_grid), tmp_path)
  assert not (tmp_path / "config.json").exists()


def read_scalars(logdir) -> dict:
  """{tag: [(step, value)]} of every event file in logdir (TFRecord framing, parsed by hand)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  out = {}
  for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
    data, i = path.read_bytes(), 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
      i += 12 + n + 4  # length, its crc, the record, its crc.
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def test_tensorboard_scalars_equal_metrics_jsonl(straight):
  workdir, _ = straight
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  scalars = read_scalars(workdir / "tensorboard" / "replica_0")
  for tag, key in (("accuracy/test_hard", lambda r: r["accuracy"]["test_hard"][0]),
                   ("train/loss", lambda r: r["train_loss"][0])):
    assert [s for s, _ in scalars[tag]] == [r["step"] for r in rows], tag
    np.testing.assert_allclose([v for _, v in scalars[tag]], [key(r) for r in rows], rtol=1e-6)
  assert "accuracy/train" in scalars  # Evaluated after the last epoch.


def test_headline_numbers_stand_for_the_configured_lambda():
  c = tiny(**{"loss.lam": 0.5, "loss.lam_grid": (0.0, 0.5, 1.0), "num_seeds": 2})
  history = [{"epoch": 1, "epoch_time_s": 1.0,
              "accuracy": {"test_hard": [0.1, 0.2, 0.7, 0.9, 0.3, 0.4]}}]  # Replica = g * 2 + s.
  res = runs.summarize(c, history)
  assert res["headline_lam"] == 0.5
  assert res["accuracy"]["test_hard"] == pytest.approx(0.8)
  assert res["grid"][1]["accuracy"]["test_hard"]["values"] == [0.7, 0.9]
  other = tiny(**{"loss.lam": 0.25, "loss.lam_grid": (0.0, 0.5, 1.0), "num_seeds": 2})
  assert runs.headline_lam(other) == 0.0  # Not on the grid: its first point, said so.
  assert runs.summarize(other, history)["accuracy"]["test_hard"] == pytest.approx(0.15)


def test_replica_maps_train_alike():
  """An MLP's K replicas batched ('vmap', its CPU default) or run one at a time in a loop
  ('scan') train as the unrolled program does (the loop exactly; the batched products up to
  float rounding), and the conv nets keep 'unroll' on CPU."""
  c = tiny(**{"model.name": "lff_mlp", "num_seeds": 3, "optim.name": "adam"})
  model = models.get_model("lff_mlp", num_classes=10)
  assert step_lib.replica_map_of(model) == "vmap"
  assert step_lib.replica_map_of(models.get_model("cheater", num_classes=10)) == (
      "unroll" if jax.default_backend() == "cpu" else "vmap")
  # The LfF MLP runs the input-gradient penalty's step one replica at a time; the study's MLP
  # and every other method keep the batched map, and a set REPLICA_MAP overrides them all.
  penalty, erm = methods.get("gradient_penalty"), methods.get("erm")
  assert [step_lib.replica_map_of(model, m) for m in (penalty, erm)] == ["scan", "vmap"]
  mlp = models.get_model("mlp", num_classes=10)
  assert step_lib.replica_map_of(mlp, penalty) == "vmap"
  with step_lib.layout("unroll"):
    assert step_lib.replica_map_of(model, penalty) == "unroll"
  rng = np.random.default_rng(2)
  data = {"images": jnp.asarray(rng.integers(0, 256, (24, 28, 28, 3), dtype=np.uint8)),
          "labels": jnp.asarray(rng.integers(0, 10, 24), jnp.int32)}
  order = jnp.asarray(np.stack([rng.permutation(24)[:16].reshape(2, 8) for _ in range(3)]))
  out = {}
  for mode in ("scan", "unroll", "vmap"):
    step = functools.partial(step_lib.train_step, **runs.step_kwargs(c, model, 2))
    fn = jax.jit(step_lib.map_replicas(step, (0, None, 0, 0), mode=mode))
    state = runs.init_state(c, model, optim.make_optimizer(c.optim, 10))
    for _ in range(3):
      state, m = fn(state, data, order, jnp.zeros((3,)))
    out[mode] = jax.tree_util.tree_leaves((state.params, state.opt_state, m))
  assert len(out["vmap"]) == len(out["unroll"]) > 10
  kernel = np.asarray(out["vmap"][0])  # The replicas differ (their seeds), so a mix-up shows.
  assert kernel.shape[0] == 3 and not np.allclose(kernel[0], kernel[1])
  for a, b, v in zip(out["scan"], out["unroll"], out["vmap"]):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(v), np.asarray(b), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="Unknown replica map 'pmap'"):
    step_lib.map_replicas(step, (0,), mode="pmap")
