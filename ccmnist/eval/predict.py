"""One jitted forward pass over fixed-shape batches: any number of images, one compile."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.util import batches


def _forward(params, images, *, model):
  return model.apply({"params": params}, images.astype(jnp.float32))


def make_forward(model):
  """The jitted `(params, images uint8/float [B,H,W,3]) -> logits [B, classes]`."""
  return jax.jit(functools.partial(_forward, model=model))


def predict_logits(forward, params, images, *, batch_size: int = 1000) -> np.ndarray:
  """Logits float32[N, classes] of every image, in batches of exactly `batch_size`.

  The last batch is padded (its extra rows dropped), so `forward` compiles once per
  (params shape, batch_size).
  """
  return batches.map_batches(lambda x: forward(params, jnp.asarray(x)), (np.asarray(images),),
                             batch_size=batch_size)
