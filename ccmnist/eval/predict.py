"""One jitted forward pass over fixed-shape batches: any number of images, one compile."""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _forward(params, images, *, model):
  return model.apply({"params": params}, images.astype(jnp.float32))


def make_forward(model):
  """The jitted `(params, images uint8/float [B,28,28,3]) -> logits [B, classes]`."""
  return jax.jit(functools.partial(_forward, model=model))


def predict_logits(forward, params, images, *, batch_size: int = 1000) -> np.ndarray:
  """Logits float32[N, classes] of every image, in batches of exactly `batch_size`.

  The last batch is zero-padded, so `forward` compiles once per (params shape, batch_size).
  """
  images = np.asarray(images)
  n = images.shape[0]
  if n == 0:
    raise ValueError("predict needs at least one image.")
  pad = (-n) % batch_size
  if pad:
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  out = [forward(params, jnp.asarray(images[i:i + batch_size]))
         for i in range(0, images.shape[0], batch_size)]
  return np.asarray(jax.device_get(jnp.concatenate(out)))[:n]
