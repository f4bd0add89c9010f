"""Just Train Twice (JTT): upweight the training examples an identification run got wrong.

Liu, Haghgoo, Chen, Raghunathan, Koh, Sagawa, Liang and Finn 2021, "Just Train Twice: Improving
Group Robustness without Training Group Information" (ICML 2021).

Knows nothing about the bias. Needs a reference run: ERM on the same data (the paper's
identification model, trained for its T epochs), trained by the caller with the same seeds;
settings.reference is its workdir, which the loop loads (train/reference.py). Replica r reads
the reference replica with the same seed (at the reference's headline lambda), so each seed has
its own error set.

Its error set E_r is the train examples the reference replica misclassifies after its last
epoch (its predictions.npz 'train'); lam is the paper's upweight lambda_up (>= 1; 1 is ERM).
The paper trains on a dataset in which E is repeated lambda_up times; here each batch keeps
the ordinary order and the loss weights E by lambda_up, normalized as the upsampled dataset's
mean: loss = mean_batch(w_i * CE_i) / mean_train(w), w_i = lambda_up on E and 1 elsewhere, whose
expectation over batches is the upsampled set's mean loss. The normalizer is fixed (the whole
train set's mean weight), so the loss stays a mean over examples: sliceable.
"""

from absl import logging
import jax.numpy as jnp
import numpy as np

from ccmnist.train import losses
from ccmnist.train import replicas as replicas_lib
from ccmnist.train.methods import base

DEFAULTS = {"reference": ""}


def error_sets(reference, train_split, reps) -> np.ndarray:
  """bool [K, N]: the train examples each replica's reference replica misclassifies
  (reference: train/reference.py's Reference)."""
  ref, idx = reference.workdir, reference.replicas_of(reps)
  preds = reference.predictions("train")
  labels = np.asarray(train_split["labels"])
  if preds is None:
    raise ValueError(f"The reference run {ref} has no train predictions (predictions.npz "
                     "'train', written after its last epoch); let it finish first.")
  if preds.shape[1] != labels.shape[0]:
    raise ValueError(f"The reference run {ref} predicted {preds.shape[1]} train examples, this "
                     f"run has {labels.shape[0]}; train the reference on the same data.")
  return np.asarray(preds[idx] != labels[None], bool)


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  del config, settings
  errors = error_sets(reference, train_split, reps)
  logging.info("JTT error sets (fraction of train): %s", np.round(errors.mean(1), 4).tolist())
  return {"errors": errors}


def check(config, *, settings) -> None:
  del settings  # The reference itself may not be trained yet: init_extra reads it.
  bad = [lam for lam in replicas_lib.lam_grid(config) if lam < 1]
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
    check=check, reference="reference",
    benchmark=base.Benchmark(title="JTT", grid=(5.0, 20.0, 50.0), quick_grid=(20.0,),
                             needs="identify"))
