"""Optimizers from config, through optax."""

import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")


def make_schedule(cfg, total_steps: int, lr=None):
  """cfg.lr (or `lr`: a number or a traced value), cfg.schedule ('constant' or 'cosine'),
  cfg.warmup_steps (linear from 0)."""
  if cfg.schedule not in SCHEDULES:
    raise ValueError(f"Unknown schedule {cfg.schedule!r}; use one of {SCHEDULES}.")
  if cfg.lr <= 0:
    raise ValueError(f"config.optim.lr must be > 0; got {cfg.lr}.")
  lr = cfg.lr if lr is None else lr
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, cfg.warmup_steps, max(total_steps, cfg.warmup_steps + 1))
  if cfg.warmup_steps:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, cfg.warmup_steps), optax.constant_schedule(lr)],
        [cfg.warmup_steps])
  return lr


def coupled_l2(tx: optax.GradientTransformation, weight_decay: float):
  """tx on g + weight_decay * params: the L2 term 0.5 * wd * ||params||^2 added to the loss,
  before momentum or Adam's moments, as PyTorch's SGD and Adam take `weight_decay`. wd = 0
  returns tx itself, so runs without decay keep their optimizer state and their numbers."""
  if not weight_decay:
    return tx
  return optax.chain(optax.add_decayed_weights(weight_decay), tx)


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """sgd (with optional momentum), adam or adamw from config.optim; with an lr grid
  (cfg.lr_grid) the learning rate is a value in the optimizer state (per_replica_lr).

  weight_decay: sgd and adam as PyTorch's (coupled L2, coupled_l2); adamw decoupled (Loshchilov
  and Hutter), as optax.adamw.
  """
  if cfg.get("lr_grid"):
    return per_replica_lr(cfg, total_steps)
  return optimizer_at(cfg, total_steps)


def per_replica_lr(cfg, total_steps: int) -> optax.GradientTransformation:
  """optimizer_at with its learning rate injected into the optimizer state
  (optax.inject_hyperparams: hyperparams['lr']), which holds one value per replica once
  set_lrs has written them; a replica then steps exactly as a run at its own lr does."""
  return optax.inject_hyperparams(lambda lr: optimizer_at(cfg, total_steps, lr))(lr=cfg.lr)


def set_lrs(opt_state, lrs):
  """A replica-stacked per_replica_lr state with replica r's learning rate lrs[r]."""
  lrs = jnp.asarray(lrs, opt_state.hyperparams["lr"].dtype)
  if lrs.shape != opt_state.hyperparams["lr"].shape:
    raise ValueError(f"learning rates of shape {lrs.shape} for a state of shape "
                     f"{opt_state.hyperparams['lr'].shape}; give one per replica.")
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "lr": lrs})


def optimizer_at(cfg, total_steps: int, lr=None) -> optax.GradientTransformation:
  """make_optimizer's optimizer at learning rate `lr` (default cfg.lr)."""
  if cfg.weight_decay < 0:
    raise ValueError(f"config.optim.weight_decay must be >= 0 (0: none); got {cfg.weight_decay}.")
  lr = make_schedule(cfg, total_steps, lr)
  if cfg.name == "sgd":
    return coupled_l2(optax.sgd(lr, momentum=cfg.momentum or None), cfg.weight_decay)
  if cfg.name == "adam":
    return coupled_l2(optax.adam(lr), cfg.weight_decay)
  if cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=cfg.weight_decay)
  raise ValueError(f"Unknown optimizer {cfg.name!r}; use one of {OPTIMIZERS}.")
