"""The method seam: the registry, settings, and what the step and loop do for every method.

Each method's own loss is tested in its own file (test_methods_*.py); here a probe method with
state, index reads and sample weights checks what the seam promises any method.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ccmnist.train import losses
from ccmnist.train import loop
from ccmnist.train import methods
from ccmnist.train import runs
from ccmnist.train.methods import base
from configs import cheater


def tiny(loss="erm", settings=None, **overrides):
  c = cheater.get_config("tiny")
  c.unlock()
  c.loss.name = loss
  c.loss.settings = ml_collections.ConfigDict(settings or {})
  c.update_from_flattened_dict(overrides)
  c.lock()
  return c


def test_every_method_is_documented_and_named_by_its_key():
  for name, method in methods.METHODS.items():
    assert method.name == name
    assert method.summary and method.paper and method.knows, name
    assert method.kind in base.KINDS, name
    assert callable(method.loss) == (method.kind == "train"), name  # A refit has no loss.
    assert set(method.batch_keys) >= {"labels"}, name
    if method.reference:
      assert method.reference in method.defaults, name


def test_a_refit_is_not_trained():
  with pytest.raises(ValueError, match="'dfr' is a refit of a trained run, not trained itself"):
    runs.check_config(tiny("dfr"))


def test_settings_are_defaults_overridden_and_unknown_ones_refused(monkeypatch):
  probe = base.Method(name="probe", loss=None, summary="s", paper="p",
                      defaults={"eta": 0.1, "groups": "label"})
  monkeypatch.setitem(methods.METHODS, "probe", probe)
  assert methods.settings_of(tiny("probe"))["eta"] == 0.1
  assert methods.settings_of(tiny("probe", {"eta": 0.5}))["eta"] == 0.5
  with pytest.raises(ValueError, match=r"settings.etta is not a setting of 'probe'.*eta, groups"):
    methods.settings_of(tiny("probe", {"etta": 0.5}))
  with pytest.raises(ValueError, match="Unknown loss 'nope'"):
    runs.check_config(tiny("nope"))


def test_study_methods_give_the_study_objectives():
  """erm, gradient_penalty, color_gradient_penalty and consistency through the seam: CE plus
  lam times their penalty (losses.py's pieces), the consistency term off during warmup."""
  model = runs.build(tiny())[0]
  params = runs.init_state(tiny(), model, runs.build(tiny())[1]).params
  params = jax.tree_util.tree_map(lambda x: x[0], params)
  rng = np.random.default_rng(0)
  batch = {"images": jnp.asarray(rng.uniform(0, 255, (4, 28, 28, 3)), jnp.float32),
           "cf_images": jnp.asarray(rng.uniform(0, 255, (4, 28, 28, 3)), jnp.float32),
           "labels": jnp.asarray([1, 2, 3, 4])}
  fn = lambda x: model.apply({"params": params}, x)
  x, y = batch["images"], batch["labels"]
  ce = float(losses.cross_entropy(logits=fn(x), labels=y))
  penalties = {
      "erm": 0.0,
      "gradient_penalty": losses.input_gradient_penalty(logit_fn=fn, images=x, labels=y),
      "color_gradient_penalty": losses.color_gradient_penalty(logit_fn=fn, images=x, labels=y),
      "consistency": losses.consistency(logits=fn(x), cf_logits=fn(batch["cf_images"]))}
  assert 0 < float(penalties["color_gradient_penalty"]) < float(penalties["gradient_penalty"])
  for name, penalty in penalties.items():
    got, aux, extra = methods.get(name).loss(
        model=model, params=params, batch=batch, lam=0.3, extra={}, step=jnp.int32(5),
        warmup_steps=2, settings=methods.settings_of(tiny(name)))
    np.testing.assert_allclose(got, ce + 0.3 * float(penalty), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(aux["ce"], ce, rtol=1e-6)
    np.testing.assert_allclose(aux["penalty"], float(penalty), rtol=1e-5, err_msg=name)
    assert set(aux) == {"ce", "penalty", "accuracy"} and extra == {}
  # Consistency is off during warmup.
  got, aux, _ = methods.get("consistency").loss(
      model=model, params=params, batch=batch, lam=0.3, extra={}, step=jnp.int32(1),
      warmup_steps=2, settings={})
  np.testing.assert_allclose(got, aux["ce"], rtol=1e-6)


def _probe_loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  """ERM that counts its steps and the times each row was drawn (state the seam keeps)."""
  del step, warmup_steps, settings
  logits = model.apply({"params": params}, batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"])
  seen = extra["seen"].at[batch["index"]].add(1)
  extra = {"steps": extra["steps"] + 1, "seen": seen}
  return ce + 0.0 * lam, {"ce": ce, "penalty": jnp.zeros(()), "accuracy": base.accuracy(
      logits, batch["labels"])}, extra


def _probe_extra(config, train_split, reps, *, settings, reference):
  del config, settings, reference
  n = len(train_split["labels"])
  return {"steps": np.zeros(len(reps), np.int32), "seen": np.zeros((len(reps), n), np.int32)}


def _probe_weights(config, train_split):
  w = np.zeros(len(train_split["labels"]), np.float32)
  w[:3] = 1 / 3  # Only rows 0, 1 and 2 may be drawn.
  return w


PROBE = base.Method(name="probe", loss=_probe_loss, summary="s", paper="p",
                    batch_keys=("images", "labels", "index"), sliceable=False,
                    init_extra=_probe_extra, sample_weights=_probe_weights)


def test_state_is_kept_checkpointed_and_sampling_follows_the_weights(tmp_path, monkeypatch):
  monkeypatch.setitem(methods.METHODS, "probe", PROBE)
  c = tiny("probe", num_seeds=2)
  loop.train_and_evaluate(c, tmp_path)
  steps = 2 * (c.data.train_size // c.train.batch_size)
  mngr = runs.checkpoint_manager(tmp_path)
  state = mngr.restore(mngr.latest_step())
  extra = state["extra"]
  np.testing.assert_array_equal(extra["steps"], [steps, steps])
  seen = np.asarray(extra["seen"])
  assert seen.sum(axis=1).tolist() == [steps * c.train.batch_size] * 2
  assert seen[:, 3:].sum() == 0 and (seen[:, :3] > 0).all()  # Drawn only where weighted.
  assert not np.array_equal(seen[0], seen[1])  # Each replica's own draws.
  # load_run restores a run whose method keeps state, without recomputing that state.
  model, params, _ = runs.load_run(tmp_path, replica=1)
  np.testing.assert_array_equal(
      jax.tree_util.tree_leaves(params)[0],
      jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[1], state["params"]))[0])


def test_data_parallel_refuses_a_method_with_state(monkeypatch):
  monkeypatch.setitem(methods.METHODS, "probe", PROBE)
  with pytest.raises(ValueError, match="'probe' keeps per-replica state.*data_parallel=False"):
    runs.check_config(tiny("probe", **{"train.data_parallel": True}))
