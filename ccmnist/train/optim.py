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


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """sgd (with optional momentum), adam or adamw from config.optim."""
  lr = make_schedule(cfg, total_steps)
  if cfg.name == "sgd":
    return optax.sgd(lr, momentum=cfg.momentum or None)
  if cfg.name == "adam":
    return optax.adam(lr)
  if cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=cfg.weight_decay)
  raise ValueError(f"Unknown optimizer {cfg.name!r}; use one of {OPTIMIZERS}.")
