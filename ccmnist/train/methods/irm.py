"""IRMv1: the risk of every environment, plus how far each is from optimal for its own scale.

Arjovsky, Bottou, Gulrajani and Lopez-Paz 2019, "Invariant Risk Minimization" (arXiv
1907.02893), the IRMv1 objective as their colored-MNIST code (`colored_mnist/main.py`) trains it.

Knows: environments, train examples split so that the bias-conflicting share differs between
them: groups.assign_envs(aligned, env_conflict_scales, rng), rng seeded from config.data.seed,
computed once (init_extra) and kept in extra['envs'] [N] (the same for every replica).

Per environment e present in the batch (R_e: the mean CE of its rows):
  penalty_e = (d/dw R_e(w * logits) at w = 1)^2          (irm_penalty)
  loss      = mean_e R_e + pw * mean_e penalty_e, divided by pw when pw > 1,
where pw = lam from step config.loss.warmup_epochs x steps_per_epoch on, 1 before: the paper's
code's `penalty_anneal_iters` and its rescaling "to keep gradients in a reasonable range" (with
plain SGD it also divides the step size by pw). lam is that penalty weight. The benchmark runs
the code's magnitudes (IRM_GRID, up to its weight of about 9e4) and its switch-on point, step 190
of 501, as a share of the run's epochs (IRM_WARMUP_FRACTION; Benchmark.warmup_of).

Settings: `env_conflict_scales`, one scale per environment of the train split's conflicting share
(groups.assign_envs; default (1.5, 0.5), two environments). Choices where the paper leaves room:
softmax cross-entropy over 10 digits where the paper's code has a binary logit; the means over
environments count only those the batch holds; no extra L2 term (the optimizer's weight decay
is config.optim.weight_decay). Not sliceable: the environment means are over the whole batch.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.data import groups
from ccmnist.train import losses
from ccmnist.train.methods import base
from ccmnist.train.methods import groupdro


def irm_penalty(logits, labels, mask=None):
  """IRMv1's penalty: (d/dw R(w * logits) at w = 1)^2, R the mean CE of the rows where mask
  (every row when None); 0 when no row is. Differentiable (the loss backpropagates through it)."""
  mask = jnp.ones(labels.shape) if mask is None else mask.astype(logits.dtype)

  def risk(w):
    ce = losses.cross_entropy(logits=w * logits, labels=labels, reduction="none")
    return jnp.sum(mask * ce) / jnp.maximum(jnp.sum(mask), 1.0)
  return jnp.square(jax.grad(risk)(jnp.ones((), logits.dtype)))


def penalty_weight(lam, step, warmup_steps):
  """(weight, divisor): lam from warmup_steps on, 1 before; the loss is divided by the weight
  when it exceeds 1 (the IRM and V-REx colored-MNIST code's rescaling), else by 1."""
  weight = jnp.where(step >= warmup_steps, lam, 1.0)
  return weight, jnp.maximum(weight, 1.0)


def present_mean(values, present):
  """The mean of values [E] over the entries where present."""
  present = present.astype(values.dtype)
  return jnp.sum(present * values) / jnp.maximum(jnp.sum(present), 1.0)


def num_envs(settings) -> int:
  return len(settings["env_conflict_scales"])


def env_risks(ce, envs, n_envs: int):
  """(risks [E], present [E]): the mean CE of each environment's rows, and whether it has any."""
  risks, counts = groupdro.group_means(ce, envs, n_envs)
  return risks, counts > 0


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  """envs [K, N]: the environment of every train example, the same for every replica."""
  del reference
  scales = tuple(float(s) for s in settings["env_conflict_scales"])
  envs = groups.assign_envs(np.asarray(train_split["aligned"]), scales,
                            np.random.default_rng(config.data.seed))
  return {"envs": np.tile(np.asarray(envs, np.int32), (len(reps), 1))}


def check(config, *, settings) -> None:
  scales = tuple(settings["env_conflict_scales"])
  if len(scales) < 2:
    raise ValueError(f"config.loss.settings.env_conflict_scales={scales}: give at least two "
                     "environments' scales, e.g. (1.5, 0.5).")
  try:  # The scales' own rules (>= 0, mean 1), before anything is written.
    groups.env_conflict_counts(config.data.train_size, 0, scales)
  except ValueError as e:
    raise ValueError(f"config.loss.settings.env_conflict_scales: {e}") from None


def batch_terms(model, params, batch, extra):
  """(logits, ce [B], envs [B]) of a batch: the environments read from extra by row."""
  logits = base.logit_fn(model, params)(batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"], reduction="none")
  return logits, ce, extra["envs"][batch["index"]]


def objective(*, model, params, batch, lam, extra, step, warmup_steps, n_envs: int):
  """IRMv1 on the n_envs environments extra['envs'] gives each row: (loss, aux, extra)."""
  logits, ce, envs = batch_terms(model, params, batch, extra)
  risks, present = env_risks(ce, envs, n_envs)
  penalties = jnp.stack([irm_penalty(logits, batch["labels"], envs == e)
                         for e in range(n_envs)])
  penalty = present_mean(penalties, present)
  weight, divisor = penalty_weight(lam, step, warmup_steps)
  total = (present_mean(risks, present) + weight * penalty) / divisor
  return total, base.ce_metrics(ce, logits, batch["labels"], penalty), extra


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  return objective(model=model, params=params, batch=batch, lam=lam, extra=extra, step=step,
                   warmup_steps=warmup_steps, n_envs=num_envs(settings))


ENV_KNOWS = "environments: train examples split by how often their color conflicts with the digit"
ENV_DEFAULTS = {"env_conflict_scales": (1.5, 0.5)}
# The benchmark's penalty weights of IRMv1 (and EIIL, which trains IRMv1): up to the IRM authors'
# colored-MNIST weight (91257.18613115903 in `reproduce_paper_results.sh`, from their random
# search over 10^2..10^6). Quick: the grid's weakest and a strong one.
IRM_GRID = (1e2, 1e3, 1e4, 1e5)
IRM_QUICK_GRID = (1e4,)  # One point: the quick profile keeps its budget.
# Where the penalty switches on: their penalty_anneal_iters=190 of steps=501, as a share of the
# run's epochs (Benchmark.warmup_of), so a protocol of 100 epochs and one of 10 keep it.
IRM_WARMUP_FRACTION = 190 / 501

METHOD = base.Method(
    name="irm", loss=loss,
    summary="mean env risk + lam * mean (d risk_e / d logit scale)^2 (IRMv1), after warmup",
    paper="Arjovsky et al. 2019, 'Invariant Risk Minimization'", knows=ENV_KNOWS,
    lam_means="IRMv1 penalty weight after warmup (1 before; the loss divided by it when > 1)",
    batch_keys=("images", "labels", "index"), sliceable=False, defaults=ENV_DEFAULTS,
    init_extra=init_extra, check=check,
    benchmark=base.Benchmark(title="IRMv1", grid=IRM_GRID, quick_grid=IRM_QUICK_GRID,
                             warmup_epochs=1, warmup_fraction=IRM_WARMUP_FRACTION))
