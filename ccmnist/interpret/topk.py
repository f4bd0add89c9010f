"""The dataset images that drive each channel most: per-channel pooled responses and top-k."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.interpret import gradcam as gradcam_lib
from ccmnist.util import batches

POOLS = ("mean", "max")


@functools.partial(jax.jit, static_argnames=("model", "layer", "relu", "pool"))
def _pooled(model, params, images, *, layer, relu, pool):
  _, state = model.apply({"params": params}, images.astype(jnp.float32),
                         mutable=["intermediates"])
  a = state["intermediates"][layer][0]
  r = jax.nn.relu(a) if relu else a
  return r.mean(axis=(1, 2)) if pool == "mean" else r.max(axis=(1, 2))


def channel_means(model, params, images, *, layer: str, relu: bool = False,
                  pool: str = "mean", batch_size: int = 500) -> np.ndarray:
  """float32[N, C]: each image's response of every channel of `layer`, pooled over space
  (pool 'mean' or 'max'), before the ReLU unless relu=True. Batches of `batch_size` (the last
  one padded, so one compiled shape)."""
  gradcam_lib.check_layer(model, layer, np.shape(images)[1:])
  if pool not in POOLS:
    raise ValueError(f"Unknown pool {pool!r}; use one of {POOLS}.")
  return batches.map_batches(
      lambda b: _pooled(model, params, jnp.asarray(b), layer=layer, relu=relu, pool=pool),
      (np.asarray(images),), batch_size=batch_size)


def top_k(model, params, images, *, layer: str, k: int = 9, relu: bool = False,
          batch_size: int = 500) -> dict:
  """The k images with the largest mean (pre-ReLU) activation of each channel.

  Returns 'indices' int[C, k] into `images` (largest first) and 'values' float32[C, k].
  """
  means = channel_means(model, params, images, layer=layer, relu=relu, batch_size=batch_size)
  if k > len(means):
    raise ValueError(f"k={k} exceeds the {len(means)} images given.")
  order = np.argsort(-means, axis=0, kind="stable")[:k].T  # [C, k]
  return {"indices": order, "values": np.take_along_axis(means.T, order, axis=1)}
