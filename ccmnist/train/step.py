"""Jitted steps: module-level pure functions; static settings keyword-only, bound by partial.

Steps work on one replica; the loop vmaps them over a leading replica axis (seeds and
hyper-parameter grid points), so K runs are one compiled program.
"""

import contextlib
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state



class TrainState(train_state.TrainState):
  """params, opt_state and step as flax's, plus `extra`: the method's own state
  (methods/base.py), {} for most."""
  extra: Any = None


def gather_batch(data, idx):
  """One batch of the resident train arrays: every array's rows idx (images as float32
  pixels), and 'index', the rows themselves."""
  batch = {k: v[idx].astype(jnp.float32) if k.endswith("images") else v[idx]
           for k, v in data.items()}
  return {**batch, "index": idx}


# Most images in one forward/backward pass of a train step. A larger batch is computed in equal
# slices whose gradients are averaged: a sliceable method's loss is a mean over examples, so the
# gradient is the same up to float rounding. On XLA:CPU a conv net's small passes keep their
# activations in cache, so a large batch runs faster as several, while an MLP's first layer is
# one matrix product that runs faster whole (docs/perf.md). None: on the CPU the model's
# `cpu_pass_images` (64 for a model that does not name one), the whole batch elsewhere; 0:
# always the whole batch.
PASS_IMAGES = None


def pass_images_of(model=None) -> int:
  """PASS_IMAGES when set; else 0 (the whole batch) off CPU, and on CPU the model's
  `cpu_pass_images` (64 for a model that does not name one, or none given)."""
  if PASS_IMAGES is not None:
    return PASS_IMAGES
  if jax.default_backend() != "cpu":
    return 0
  return _cpu_setting(model, "cpu_pass_images", 64)


def num_passes(batch_size: int, images_per_example: int, model=None) -> int:
  """How many equal slices a batch is computed in: the fewest that keep each pass at most
  pass_images_of(model) images (a divisor of batch_size)."""
  limit = pass_images_of(model)
  if limit <= 0:
    return 1
  for p in range(1, batch_size + 1):
    if batch_size % p == 0 and batch_size // p * images_per_example <= limit:
      return p
  return batch_size


def step_passes(method, batch_size: int, model=None) -> int:
  """How many slices a step of `method` computes a batch in: num_passes when the method is
  sliceable, else 1."""
  return num_passes(batch_size, method.images_per_example, model) if method.sliceable else 1


def train_step(state, data, order, lam, *, model: nn.Module, method, settings,
               steps_per_epoch: int, warmup_steps: int = 0, axis_name=None,
               grad_norm: bool = True):
  """One optimizer step on resident data; returns (state, metrics).

  `order` [steps_per_epoch, batch] holds the epoch's example indices; the batch is row
  state.step % steps_per_epoch, so the loop passes the same array every step (no host sync).
  The rest as batch_step.
  """
  return batch_step(state, gather_batch(data, order[state.step % steps_per_epoch]), lam,
                    model=model, method=method, settings=settings, warmup_steps=warmup_steps,
                    axis_name=axis_name, grad_norm=grad_norm)


def batch_step(state, batch, lam, *, model: nn.Module, method, settings, warmup_steps: int = 0,
               axis_name=None, grad_norm: bool = True):
  """One optimizer step of `method` (methods.Method) on `batch`; returns (state, metrics).

  settings: the method's settings (methods.settings_of), a dict or tuple of items.
  axis_name: None, or the mesh axis that the batch is split over, inside shard_map
  (train/parallel.py): each device computes its share of the batch, in passes, and gradients
  and metrics are averaged over the axis, so every device applies the same update.
  grad_norm: the metrics hold the gradient's global norm ('grad_norm'); False leaves it out,
  as the benchmark does: on XLA:CPU it costs an MLP's step several percent (docs/perf.md).
  """
  batch = {k: v.astype(jnp.float32) if k.endswith("images") else v for k, v in batch.items()}
  settings = dict(settings)

  def loss_fn(params, batch):
    loss, aux, extra = method.loss(model=model, params=params, batch=batch, lam=lam,
                                   extra=state.extra, step=state.step,
                                   warmup_steps=warmup_steps, settings=settings)
    return loss, (aux, extra)

  size = batch["labels"].shape[0]
  passes = step_passes(method, size, model)
  n = size // passes
  # Unrolled: a lax.scan over the slices runs much slower on XLA:CPU (docs/perf.md).
  outs = [jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, jax.tree_util.tree_map(lambda a, i=i: a[i * n:(i + 1) * n], batch))
          for i in range(passes)]
  mean = lambda *v: sum(v) / passes
  loss = mean(*[loss for (loss, _), _ in outs])
  aux = jax.tree_util.tree_map(mean, *[aux for (_, (aux, _)), _ in outs])
  grads = jax.tree_util.tree_map(mean, *[grads for _, grads in outs])
  extra = outs[0][0][1][1] if passes == 1 else state.extra  # Sliceable: left unchanged.
  if axis_name is not None:  # Equal shares: the mean of the devices' means is the batch mean.
    (loss, aux), grads = jax.lax.pmean(((loss, aux), grads), axis_name)
  state = state.apply_gradients(grads=grads).replace(extra=extra)
  metrics = {"loss": loss, **aux}
  if grad_norm:
    metrics["grad_norm"] = optax.tree.norm(grads)
  return state, metrics


def eval_step(params, images, labels, mask, *, model: nn.Module):
  """Predictions of one padded batch, and how many of its real examples are correct."""
  logits = model.apply({"params": params}, images.astype(jnp.float32))
  preds = jnp.argmax(logits, -1)
  return preds, jnp.sum((preds == labels) & mask)


# How replicas (seeds x lambda grid) share one program. 'vmap' batches them, which turns each
# conv into a grouped conv, which XLA:CPU runs far slower than K separate convs (docs/perf.md),
# while an MLP's batched matrix products run faster than K separate ones; 'unroll' traces the
# step once per replica into the same program; 'scan' runs one replica at a time in a loop
# (lax.map), which compiles the step once, not K times, but on XLA:CPU ran every model's steps
# slower. Accelerators favor 'vmap'. None picks by backend and model when a step is built (not
# at import: multi-host init must come first).
REPLICA_MAP = None
REPLICA_MAPS = ("vmap", "unroll", "scan")


def replica_map_of(model=None, method=None) -> str:
  """REPLICA_MAP when set; else 'vmap' off CPU, and on CPU the map the model names for the
  method's step (`cpu_replica_map_by_method`: (method name, map) pairs), else the model's
  `cpu_replica_map` ('unroll' for a model that names none, or none given)."""
  if REPLICA_MAP:
    return REPLICA_MAP
  if jax.default_backend() != "cpu":
    return "vmap"
  by_method = dict(_cpu_setting(model, "cpu_replica_map_by_method", ()))
  return by_method.get(getattr(method, "name", None)) or _cpu_setting(
      model, "cpu_replica_map", "unroll")


@contextlib.contextmanager
def layout(replica_map: str | None = None, pass_images: int | None = None):
  """REPLICA_MAP and PASS_IMAGES set for the steps built (traced) inside; restored after."""
  global REPLICA_MAP, PASS_IMAGES
  saved = REPLICA_MAP, PASS_IMAGES
  REPLICA_MAP, PASS_IMAGES = replica_map, pass_images
  try:
    yield
  finally:
    REPLICA_MAP, PASS_IMAGES = saved


def _cpu_setting(model, name: str, default):
  """The model's own XLA:CPU setting `name`, or `default` when it names none (None)."""
  value = getattr(model, name, None)
  return default if value is None else value


def map_replicas(fn, in_axes, *, mode: str | None = None):
  """fn mapped over the leading replica axis of the arguments whose in_axes entry is 0, as
  `mode` (one of REPLICA_MAPS; None: replica_map_of())."""
  mode = mode or replica_map_of()
  if mode not in REPLICA_MAPS:
    raise ValueError(f"Unknown replica map {mode!r}; use one of {REPLICA_MAPS}.")
  if mode == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def args_of(args, mapped):
    it = iter(mapped)
    return [next(it) if axis == 0 else a for a, axis in zip(args, in_axes)]

  if mode == "scan":
    def scanned(*args):
      mapped = tuple(a for a, axis in zip(args, in_axes) if axis == 0)
      return jax.lax.map(lambda xs: fn(*args_of(args, xs)), mapped)
    return scanned

  def unrolled(*args):
    k = jax.tree_util.tree_leaves(args[in_axes.index(0)])[0].shape[0]
    pick = lambda a, axis, i: a if axis is None else jax.tree_util.tree_map(lambda x: x[i], a)
    outs = [fn(*(pick(a, axis, i) for a, axis in zip(args, in_axes))) for i in range(k)]
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *outs)
  return unrolled


def make_train_step(**static):
  """The replica-mapped, jitted train step (state donated)."""
  step = functools.partial(train_step, **static)
  mode = replica_map_of(static.get("model"), static.get("method"))
  return jax.jit(map_replicas(step, (0, None, 0, 0), mode=mode), donate_argnums=(0,))


def make_eval_step(**static):
  """The replica-mapped, jitted eval step: params [K, ...] -> preds [K, B], correct [K]."""
  step = functools.partial(eval_step, **static)
  mode = replica_map_of(static.get("model"))
  return jax.jit(map_replicas(step, (0, None, None, None), mode=mode))
