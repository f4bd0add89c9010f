"""Gaussian-noise training (Cohen et al. 2019): the base classifier of randomized smoothing.

Every step each batch image gets isotropic Gaussian noise of standard deviation `sigma` (pixel
units of 255; the noisy image is not clipped, as smoothing's own samples are not); loss = the mean
CE on the noisy images. A model trained so is the base classifier that
ccmnist.attacks.smoothing certifies at the same sigma. lam is unused.

Randomness: a per-replica key in extra, from the replica's seed (fold_in(key(seed), 4)),
folded with the step and then with each row's index: a row's noise at a step does not depend on
which rows share its batch or on how the batch is sliced into passes.

Settings: sigma (pixel units of 255).
"""

import jax
import numpy as np

from ccmnist.train.methods import base

_KEY_STREAM = 4  # fold_in(key(seed), .): 0 init, 1 data order, 2 recolor, 3 EIIL.
DEFAULTS = {"sigma": 0.25 * 255}


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  """key [K, ...]: each replica's noise key data, from its seed."""
  del config, train_split, settings, reference
  keys = [jax.random.fold_in(jax.random.key(r["seed"]), _KEY_STREAM) for r in reps]
  return {"key": np.stack([np.asarray(jax.random.key_data(k)) for k in keys])}


def check(config, *, settings) -> None:
  del config
  sigma = settings["sigma"]
  if not sigma > 0:
    raise ValueError(f"config.loss.settings.sigma={sigma}; use > 0 (pixel units of 255).")


def noisy_rows(images, index, key, *, sigma: float):
  """images + N(0, sigma^2) per pixel, each row's noise from fold_in(key, index)."""
  noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), images.shape[1:],
                                               images.dtype))(index)
  return images + sigma * noise


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, warmup_steps
  images = noisy_rows(batch["images"], batch["index"], base.step_key(extra, step),
                      sigma=float(settings["sigma"]))
  return base.ce_on(model, params, images, batch["labels"], extra)


METHOD = base.Method(
    name="gaussian_noise", loss=loss,
    summary="mean CE on the batch's images with Gaussian noise of std sigma added each step",
    paper="Cohen, Rosenfeld, Kolter 2019 (randomized smoothing's base classifier)",
    knows="nothing about the bias", batch_keys=("images", "labels", "index"),
    defaults=DEFAULTS, init_extra=init_extra, check=check)
