"""Just Train Twice (JTT): upweight the training examples an identification run got wrong.

Liu, Haghgoo, Chen, Raghunathan, Koh, Sagawa, Liang and Finn 2021, "Just Train Twice: Improving
Group Robustness without Training Group Information" (ICML 2021).

Knows nothing about the bias. Needs a reference run: ERM on the same data (the paper's
identification model, trained for its T epochs), trained by the caller with the same seeds;
settings.reference is its workdir. Replica r reads the reference replica with the same seed (at
the reference's headline lambda), so each seed has its own error set.

Its error set E_r is the train examples the reference replica misclassifies after its last
epoch (its predictions.npz 'train'); lam is the paper's upweight lambda_up (>= 1; 1 is ERM).
The paper trains on a dataset in which E is repeated lambda_up times; here each batch keeps
the ordinary order and the loss weights E by lambda_up, normalized as the upsampled dataset's
mean: loss = mean_batch(w_i * CE_i) / mean_train(w), w_i = lambda_up on E and 1 elsewhere, whose
expectation over batches is the upsampled set's mean loss. The normalizer is fixed (the whole
train set's mean weight), so the loss stays a mean over examples: sliceable.
"""

import json

from absl import logging
import jax.numpy as jnp
import numpy as np

from ccmnist.data import splits as splits_lib
from ccmnist.train import losses
from ccmnist.train import runs
from ccmnist.train.methods import base

DEFAULTS = {"reference": ""}


def reference_of(config) -> str:
  """config.loss.settings.reference, or a ValueError saying how to set it."""
  ref = str(dict(config.loss.get("settings", None) or {}).get("reference", ""))
  if not ref:
    raise ValueError(f"{config.loss.name!r} needs a reference run: set "
                     "config.loss.settings.reference to the workdir of an ERM run trained on "
                     "the same data with the same seeds.")
  return ref


def _data_fields(data) -> dict:
  """The data-config fields that decide the arrays, JSON-normalized (tuples -> lists)."""
  return json.loads(json.dumps({k: splits_lib.field(data, k) for k in splits_lib.KEY_FIELDS},
                               default=str))


def reference_replicas(config, reps) -> tuple:
  """(reference workdir, reference config, [the reference replica of each of `reps`]).

  Replica r uses the reference replica with its seed, at the reference's headline lambda.
  ValueError, saying what to fix, when the reference trained on other data or lacks a seed.
  """
  ref = reference_of(config)
  try:
    ref_config = runs.load_config(ref)
  except FileNotFoundError as e:
    raise ValueError(f"config.loss.settings.reference: {e}") from None
  mine, theirs = _data_fields(config.data), _data_fields(ref_config.data)
  diff = [f"{k}: {theirs[k]!r} (reference) vs {mine[k]!r}" for k in mine if mine[k] != theirs[k]]
  if diff:
    raise ValueError(f"The reference run {ref} trained on other data ({'; '.join(diff[:3])}); "
                     "train the reference with this run's config.data.")
  head = runs.headline_lam(ref_config)
  by_seed = {r["seed"]: r["replica"] for r in runs.replicas(ref_config) if r["lam"] == head}
  missing = sorted({r["seed"] for r in reps} - set(by_seed))
  if missing:
    raise ValueError(f"The reference run {ref} has no replica with seed {missing[0]} (its seeds: "
                     f"{', '.join(map(str, sorted(by_seed)))}); train it with config.seed="
                     f"{config.seed} and config.num_seeds={config.num_seeds}.")
  return ref, ref_config, [by_seed[r["seed"]] for r in reps]


def error_sets(config, train_split, reps) -> np.ndarray:
  """bool [K, N]: the train examples each replica's reference replica misclassifies."""
  ref, _, idx = reference_replicas(config, reps)
  preds = runs.load_predictions(ref).get("train")
  labels = np.asarray(train_split["labels"])
  if preds is None:
    raise ValueError(f"The reference run {ref} has no train predictions (predictions.npz "
                     "'train', written after its last epoch); let it finish first.")
  if preds.shape[1] != labels.shape[0]:
    raise ValueError(f"The reference run {ref} predicted {preds.shape[1]} train examples, this "
                     f"run has {labels.shape[0]}; train the reference on the same data.")
  return np.asarray(preds[idx] != labels[None], bool)


def init_extra(config, train_split, reps) -> dict:
  errors = error_sets(config, train_split, reps)
  logging.info("JTT error sets (fraction of train): %s", np.round(errors.mean(1), 4).tolist())
  return {"errors": errors}


def check(config) -> None:
  reference_of(config)  # The reference itself may not be trained yet: init_extra reads it.
  bad = [lam for lam in runs.lam_grid(config) if lam < 1]
  if bad:
    raise ValueError(f"JTT's lam is its upweight lambda_up, >= 1 (1 is ERM); got {bad[0]}: set "
                     "config.loss.lam / lam_grid (the paper's values lie in 4..100).")


def weights(errors, lam):
  """Per-example weights lam on the error set, 1 elsewhere."""
  return jnp.where(errors, lam, 1.0)


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del step, warmup_steps, settings
  logits = model.apply({"params": params}, batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"], reduction="none")
  errors = extra["errors"][batch["index"]]
  mean_weight = 1.0 + (lam - 1.0) * jnp.mean(extra["errors"].astype(jnp.float32))
  total = jnp.mean(weights(errors, lam) * ce) / mean_weight
  return total, {**base.ce_metrics(ce, logits, batch["labels"]),
                 "upweighted": jnp.mean(errors.astype(jnp.float32))}, extra


METHOD = base.Method(
    name="jtt", loss=loss,
    summary="CE with the errors of an ERM identification run upweighted by lam",
    paper="Liu et al. 2021, 'Just Train Twice: Improving Group Robustness without Training "
          "Group Information'",
    knows="nothing about the bias (a reference ERM run's train errors)",
    lam_means="upweight lambda_up of the identification run's errors (>= 1)",
    batch_keys=("images", "labels", "index"), defaults=DEFAULTS, init_extra=init_extra,
    check=check)
