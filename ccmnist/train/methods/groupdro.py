"""Group DRO: minimize the loss of the worst group, through group weights learned online.

Sagawa, Koh, Hashimoto and Liang 2020, "Distributionally Robust Neural Networks for Group
Shifts" (ICLR), their online algorithm (Algorithm 1) as their code (`loss.py`) runs it.

Knows: the group of every train example, group = (digit, whether its color is the digit's cue):
groups.group_ids(labels, aligned): 2 x the data's classes (20 for MNIST's digits).

Each step, on the batch:
  L_g  = the mean cross-entropy of the batch's examples of group g (0 for a group absent from
         the batch, as the authors' code has it),
  q   <- q * exp(eta * (L_g + C / sqrt(n_g))), normalized to sum 1 (exponentiated gradient),
  loss = sum_g q_g L_g, q a constant (stop-gradient): the updated q weighs this step's loss.
lam is eta, the step size of the q update (the authors' `--robust_step_size`, 0.01 in their
experiments). The state `extra`: q [G] and the fixed adjustment C / sqrt(n_g) [G], G groups.
aux adds `worst_group_loss` (of the groups in the batch) and `max_group_weight` (max q).

Settings: `generalization_adjustment` C (default 0: none), n_g the group's count in the train
split. The adjustment moves q only: the authors' code also adds it to the loss (in place), a
constant there, which leaves the gradient as here.

Choices where the paper leaves room: q starts uniform over the groups that the train split holds;
a group with no train example starts at, and so stays at, weight 0 (it has no loss to weigh),
and gets no adjustment. The update is computed in log space (softmax(log q + eta * L)), equal
to the exponentiated rule but safe from overflow at large eta. Not sliceable: q is updated
once per batch, from the whole batch.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.data import groups
from ccmnist.data import splits as splits_lib
from ccmnist.train import losses
from ccmnist.train.methods import base


def group_means(values, ids, num: int):
  """(means [num], counts [num]): the mean of values [B] over the rows of each id in [0, num),
  0 for an id that no row has, and how many rows have it."""
  onehot = jax.nn.one_hot(ids, num, dtype=values.dtype)
  counts = jnp.sum(onehot, axis=0)
  return values @ onehot / jnp.maximum(counts, 1.0), counts


def update_weights(q, group_loss, eta, adjustment=0.0):
  """q * exp(eta * (group_loss + adjustment)), normalized: one exponentiated-gradient step."""
  return jax.nn.softmax(jnp.log(q) + eta * (group_loss + adjustment))


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  """q: uniform over the groups present in the train split; adjustment C / sqrt(n_g)."""
  del reference
  c = settings["generalization_adjustment"]
  counts = np.asarray(groups.group_counts(
      train_split["labels"], train_split["aligned"],
      num_classes=splits_lib.spec(config.data).num_classes), np.float64)
  present = counts > 0
  q = present / present.sum()
  adjustment = np.where(present, c / np.sqrt(np.maximum(counts, 1.0)), 0.0)
  tile = lambda a: np.tile(a.astype(np.float32), (len(reps), 1))
  return {"q": tile(q), "adjustment": tile(adjustment)}


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del step, warmup_steps, settings
  logits = base.logit_fn(model, params)(batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"], reduction="none")
  # groups.group_ids in jnp (it is numpy, for host arrays): 2 * label + aligned.
  ids = 2 * batch["labels"] + batch["aligned"].astype(batch["labels"].dtype)
  group_loss, counts = group_means(ce, ids, extra["q"].shape[-1])  # q: one weight a group.
  q = jax.lax.stop_gradient(
      update_weights(extra["q"], group_loss, lam, extra["adjustment"]))
  robust = jnp.sum(q * group_loss)
  aux = {**base.ce_metrics(ce, logits, batch["labels"]),
         "worst_group_loss": jnp.max(jnp.where(counts > 0, group_loss, -jnp.inf)),
         "max_group_weight": jnp.max(q)}
  return robust, aux, {**extra, "q": q}


def check(config, *, settings) -> None:
  del config
  if settings["generalization_adjustment"] < 0:
    raise ValueError("config.loss.settings.generalization_adjustment must be >= 0 (0: none).")


METHOD = base.Method(
    name="groupdro", loss=loss,
    summary="sum_g q_g L_g, q <- q * exp(eta L_g) each step: the worst groups weigh most",
    paper="Sagawa et al. 2020, 'Distributionally Robust Neural Networks for Group Shifts'",
    knows="the group (digit x color aligned or not) of every train example",
    lam_means="eta, the step size of the group weights' exponentiated-gradient update",
    batch_keys=("images", "labels", "aligned"), sliceable=False,
    defaults={"generalization_adjustment": 0.0}, init_extra=init_extra, check=check,
    benchmark=base.Benchmark(title="Group DRO", grid=(0.001, 0.01, 0.1), quick_grid=(0.01, 0.1)))
