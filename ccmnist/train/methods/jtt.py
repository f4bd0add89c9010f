"""Just Train Twice (JTT): upsample the training examples an identification run got wrong.

Liu, Haghgoo, Chen, Raghunathan, Koh, Sagawa, Liang and Finn 2021, "Just Train Twice: Improving
Group Robustness without Training Group Information" (ICML 2021).

Knows nothing about the bias. Needs a reference run: ERM on the same data (the paper's
identification model, trained for its T epochs), trained by the caller with the same seeds;
settings.reference is its workdir, which the loop loads (train/reference.py). Replica r reads
the reference replica with the same seed (at the reference's headline lambda), so each seed has
its own error set.

Its error set E_r is the train examples the reference replica misclassifies after its last
epoch (its predictions.npz 'train'); lam is the paper's upweight lambda_up, an integer >= 1 (1 is
ERM). As the paper (and its code's upsampled train set) does, replica r trains on the train set
with each example of E_r repeated lambda_up times and every other example once (epoch_pool,
base.Method.epoch_pool); batches stream through successive random permutations of that pool
(loop.epoch_orders), and the loss is the plain mean cross-entropy. An epoch keeps the train
split's N // batch steps, the compute of an ERM epoch: the upsampled set, N + (lambda_up - 1)
|E_r| examples, takes more than one epoch to pass through once, and epochs cross its passes.
aux adds `upweighted`, the batch's share of E_r.
"""

from absl import logging
import jax.numpy as jnp
import numpy as np

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
  for lam in replicas_lib.lam_grid(config):
    if lam < 1 or lam != int(lam):
      raise ValueError(f"JTT's lam is its upsampling lambda_up, an integer >= 1 (1 is ERM); got "
                       f"{lam}: set config.loss.lam / lam_grid (the paper's values lie in 4..100).")


def epoch_pool(config, train_split, extra, reps) -> tuple:
  """(pool [K, M], sizes [K]): replica r's upsampled train set, each error of its reference
  replica lambda_up = reps[r]['lam'] times and every other example once."""
  del config, train_split
  lams = np.asarray([r["lam"] for r in reps])
  if np.any(lams < 1) or np.any(lams != np.round(lams)):
    raise ValueError(f"JTT's lambda_up must be an integer >= 1; got {lams.tolist()}.")
  errors = np.asarray(extra["errors"], bool)
  return base.repeat_pool(np.where(errors, lams[:, None].astype(np.int64), 1))


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, step, warmup_steps, settings  # lambda_up acts through the data: epoch_pool.
  total, aux, extra = base.ce_on(model, params, batch["images"], batch["labels"], extra)
  errors = extra["errors"][batch["index"]]
  return total, {**aux, "upweighted": jnp.mean(errors.astype(jnp.float32))}, extra


METHOD = base.Method(
    name="jtt", loss=loss,
    summary="CE on the train set with an ERM identification run's errors repeated lam times",
    paper="Liu et al. 2021, 'Just Train Twice: Improving Group Robustness without Training "
          "Group Information'",
    knows="nothing about the bias (a reference ERM run's train errors)",
    lam_means="upsampling lambda_up: each identification error repeated lam times (int >= 1)",
    batch_keys=("images", "labels", "index"), defaults=DEFAULTS, init_extra=init_extra,
    check=check, reference="reference", epoch_pool=epoch_pool, inferred_split="errors",
    benchmark=base.Benchmark(title="JTT", grid=(5.0, 20.0, 50.0, 100.0), quick_grid=(20.0,),
                             needs="identify", stop_early=True))
