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
constant there, which leaves the gradient as here. `l2` (default 0: none): the paper's
regularization, without which group DRO on a model that fits its train set is no better than
ERM on the worst group. Their code (`train.py`) gives torch.optim.SGD(weight_decay=l2) every
trainable parameter, kernels and biases alike: coupled L2, the gradient plus l2 * params. Here
the loss adds 0.5 * l2 * ||params||^2 over every parameter, the same gradient, whatever
config.optim is. L2_GRID: the strengths the benchmark declares one entry each for.

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


def l2_term(params, l2: float):
  """0.5 * l2 * the sum of squares of every parameter: torch's coupled weight decay l2."""
  return 0.5 * l2 * sum(jnp.sum(jnp.square(p)) for p in jax.tree_util.tree_leaves(params))


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del step, warmup_steps
  logits = base.logit_fn(model, params)(batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"], reduction="none")
  # groups.group_ids in jnp (it is numpy, for host arrays): 2 * label + aligned.
  ids = 2 * batch["labels"] + batch["aligned"].astype(batch["labels"].dtype)
  group_loss, counts = group_means(ce, ids, extra["q"].shape[-1])  # q: one weight a group.
  q = jax.lax.stop_gradient(
      update_weights(extra["q"], group_loss, lam, extra["adjustment"]))
  robust = jnp.sum(q * group_loss)
  penalty = None
  if settings["l2"]:  # Static: l2 = 0 leaves the loss, and its numbers, as without the setting.
    penalty = l2_term(params, settings["l2"])
    robust = robust + penalty
  aux = {**base.ce_metrics(ce, logits, batch["labels"], penalty),
         "worst_group_loss": jnp.max(jnp.where(counts > 0, group_loss, -jnp.inf)),
         "max_group_weight": jnp.max(q)}
  return robust, aux, {**extra, "q": q}


def check(config, *, settings) -> None:
  del config
  if settings["generalization_adjustment"] < 0:
    raise ValueError("config.loss.settings.generalization_adjustment must be >= 0 (0: none).")
  if settings["l2"] < 0:
    raise ValueError(f"config.loss.settings.l2 must be >= 0 (0: none); got {settings['l2']}.")


# The L2 strengths of the benchmark's Group DRO entries, one entry each (eta its lambda grid):
# none; the paper's "standard" 1e-4 (its ERM and its weakly regularized group DRO); its strong
# penalties 0.1 (CelebA) and 1.0 (Waterbirds), with which its worst-group accuracy is reported.
L2_GRID = (0.0, 1e-4, 1e-1, 1.0)


METHOD = base.Method(
    name="groupdro", loss=loss,
    summary="sum_g q_g L_g, q <- q * exp(eta L_g) each step: the worst groups weigh most",
    paper="Sagawa et al. 2020, 'Distributionally Robust Neural Networks for Group Shifts'",
    knows="the group (digit x color aligned or not) of every train example",
    lam_means="eta, the step size of the group weights' exponentiated-gradient update",
    batch_keys=("images", "labels", "aligned"), sliceable=False,
    defaults={"generalization_adjustment": 0.0, "l2": 0.0}, init_extra=init_extra, check=check,
    benchmark=base.Benchmark(title="Group DRO", grid=(0.001, 0.01, 0.1), quick_grid=(0.01, 0.1),
                             stop_early=True))
