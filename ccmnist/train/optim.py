"""Optimizers from config, through optax."""

import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")


def make_schedule(cfg, total_steps: int):
  """cfg.lr, cfg.schedule ('constant' or 'cosine'), cfg.warmup_steps (linear from 0)."""
  if cfg.schedule not in SCHEDULES:
    raise ValueError(f"Unknown schedule {cfg.schedule!r}; use one of {SCHEDULES}.")
  if cfg.lr <= 0:
    raise ValueError(f"config.optim.lr must be > 0; got {cfg.lr}.")
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, cfg.warmup_steps, max(total_steps, cfg.warmup_steps + 1))
  if cfg.warmup_steps:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps), optax.constant_schedule(cfg.lr)],
        [cfg.warmup_steps])
  return cfg.lr


def coupled_l2(tx: optax.GradientTransformation, weight_decay: float):
  """tx on g + weight_decay * params: the L2 term 0.5 * wd * ||params||^2 added to the loss,
  before momentum or Adam's moments, as PyTorch's SGD and Adam take `weight_decay`. wd = 0
  returns tx itself, so runs without decay keep their optimizer state and their numbers."""
  if not weight_decay:
    return tx
  return optax.chain(optax.add_decayed_weights(weight_decay), tx)


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """sgd (with optional momentum), adam or adamw from config.optim.

  weight_decay: sgd and adam as PyTorch's (coupled L2, coupled_l2); adamw decoupled (Loshchilov
  and Hutter), as optax.adamw.
  """
  if cfg.weight_decay < 0:
    raise ValueError(f"config.optim.weight_decay must be >= 0 (0: none); got {cfg.weight_decay}.")
  lr = make_schedule(cfg, total_steps)
  if cfg.name == "sgd":
    return coupled_l2(optax.sgd(lr, momentum=cfg.momentum or None), cfg.weight_decay)
  if cfg.name == "adam":
    return coupled_l2(optax.adam(lr), cfg.weight_decay)
  if cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=cfg.weight_decay)
  raise ValueError(f"Unknown optimizer {cfg.name!r}; use one of {OPTIMIZERS}.")
