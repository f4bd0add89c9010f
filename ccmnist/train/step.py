"""Jitted steps: module-level pure functions; static settings keyword-only, bound by partial.

Steps work on one replica; the loop vmaps them over a leading replica axis (seeds and
hyper-parameter grid points), so K runs are one compiled program.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from ccmnist.train import losses


class TrainState(train_state.TrainState):
  pass


def images_per_example(loss_name: str) -> int:
  """Images one example costs a step: the consistency loss also runs its counterfactual."""
  return 2 if loss_name == "consistency" else 1


def batch_keys(loss_name: str) -> tuple:
  """The arrays of an example that the loss `loss_name` reads."""
  return ("images", "labels", "cf_images") if loss_name == "consistency" else ("images", "labels")


def gather_batch(data, idx):
  """Images of one batch as float32 pixels, gathered on device from the resident split."""
  batch = {"images": data["images"][idx].astype(jnp.float32), "labels": data["labels"][idx]}
  if "cf_images" in data:
    batch["cf_images"] = data["cf_images"][idx].astype(jnp.float32)
  return batch


# Most images in one forward/backward pass of a train step. A larger batch is computed in equal
# slices whose gradients are averaged: every loss here is a mean over examples, so the gradient
# is the same up to float rounding. On XLA:CPU small passes keep their activations in cache, so
# a large batch runs faster as several (docs/perf.md). None: 64 on the CPU, the whole batch
# elsewhere; 0: always the whole batch.
PASS_IMAGES = None


def num_passes(batch_size: int, images_per_example: int) -> int:
  """How many equal slices a batch is computed in: the fewest that keep each pass at most
  PASS_IMAGES images (a divisor of batch_size)."""
  limit = PASS_IMAGES
  if limit is None:
    limit = 64 if jax.default_backend() == "cpu" else 0
  if limit <= 0:
    return 1
  for p in range(1, batch_size + 1):
    if batch_size % p == 0 and batch_size // p * images_per_example <= limit:
      return p
  return batch_size


def train_step(state, data, order, lam, *, model: nn.Module, loss_name: str,
               steps_per_epoch: int, warmup_steps: int = 0, grad_scale: str = "unit",
               axis_name=None):
  """One optimizer step on resident data; returns (state, metrics).

  `order` [steps_per_epoch, batch] holds the epoch's example indices; the batch is row
  state.step % steps_per_epoch, so the loop passes the same array every step (no host sync).
  The rest as batch_step.
  """
  return batch_step(state, gather_batch(data, order[state.step % steps_per_epoch]), lam,
                    model=model, loss_name=loss_name, warmup_steps=warmup_steps,
                    grad_scale=grad_scale, axis_name=axis_name)


def batch_step(state, batch, lam, *, model: nn.Module, loss_name: str, warmup_steps: int = 0,
               grad_scale: str = "unit", axis_name=None):
  """One optimizer step on `batch` ({'images', 'labels'[, 'cf_images']}); returns (state, metrics).

  axis_name: None, or the mesh axis that the batch is split over, inside shard_map
  (train/parallel.py): each device computes its share of the batch, in passes, and gradients
  and metrics are averaged over the axis, so every device applies the same update.
  """
  batch = {k: v.astype(jnp.float32) if k.endswith("images") else v for k, v in batch.items()}
  consistency_on = (state.step >= warmup_steps).astype(jnp.float32)

  def loss_fn(params, batch):
    logit_fn = lambda x: model.apply({"params": params}, x)
    return losses.total_loss(
        logit_fn=logit_fn, images=batch["images"], labels=batch["labels"],
        cf_images=batch.get("cf_images"), name=loss_name, lam=lam,
        consistency_on=consistency_on, grad_scale=grad_scale)

  size = batch["labels"].shape[0]
  passes = num_passes(size, images_per_example(loss_name))
  n = size // passes
  # Unrolled: a lax.scan over the slices runs much slower on XLA:CPU (docs/perf.md).
  per_pass = [jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, jax.tree_util.tree_map(lambda a, i=i: a[i * n:(i + 1) * n], batch))
              for i in range(passes)]
  (loss, aux), grads = jax.tree_util.tree_map(lambda *v: sum(v) / passes, *per_pass)
  if axis_name is not None:  # Equal shares: the mean of the devices' means is the batch mean.
    (loss, aux), grads = jax.lax.pmean(((loss, aux), grads), axis_name)
  state = state.apply_gradients(grads=grads)
  return state, {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}


def eval_step(params, images, labels, mask, *, model: nn.Module):
  """Predictions of one padded batch, and how many of its real examples are correct."""
  logits = model.apply({"params": params}, images.astype(jnp.float32))
  preds = jnp.argmax(logits, -1)
  return preds, jnp.sum((preds == labels) & mask)


# How replicas (seeds x lambda grid) share one program. 'vmap' batches them, which turns each
# conv into a grouped conv, which XLA:CPU runs far slower than K separate convs (docs/perf.md);
# 'unroll' traces the step once per replica into the same program. Accelerators favor 'vmap'.
# None picks by backend when a step is built (not at import: multi-host init must come first).
REPLICA_MAP = None


def map_replicas(fn, in_axes):
  """fn mapped over the leading replica axis of the arguments whose in_axes entry is 0."""
  mode = REPLICA_MAP or ("unroll" if jax.default_backend() == "cpu" else "vmap")
  if mode == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def unrolled(*args):
    k = jax.tree_util.tree_leaves(args[in_axes.index(0)])[0].shape[0]
    pick = lambda a, axis, i: a if axis is None else jax.tree_util.tree_map(lambda x: x[i], a)
    outs = [fn(*(pick(a, axis, i) for a, axis in zip(args, in_axes))) for i in range(k)]
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *outs)
  return unrolled


def make_train_step(**static):
  """The replica-mapped, jitted train step (state donated)."""
  step = functools.partial(train_step, **static)
  return jax.jit(map_replicas(step, (0, None, 0, 0)), donate_argnums=(0,))


def make_eval_step(**static):
  """The replica-mapped, jitted eval step: params [K, ...] -> preds [K, B], correct [K]."""
  step = functools.partial(eval_step, **static)
  return jax.jit(map_replicas(step, (0, None, None, None)))
