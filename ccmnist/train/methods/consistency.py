"""The study's counterfactual consistency: CE + lam * mean((f(x) - f(x_cf))^2), after warmup.

x_cf is the same grey digit in another color; the term is off for config.loss.warmup_epochs.
"""

import jax.numpy as jnp

from ccmnist.train import losses
from ccmnist.train.methods import base


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del settings
  on = (step >= warmup_steps).astype(jnp.float32)
  total, aux = losses.total_loss(
      logit_fn=base.logit_fn(model, params), images=batch["images"], labels=batch["labels"],
      cf_images=batch["cf_images"], name="consistency", lam=lam, consistency_on=on)
  return total, aux, extra


METHOD = base.Method(
    name="consistency", loss=loss,
    summary="CE + lam * squared logit gap to a recolored partner, after warmup epochs",
    paper="the study", knows="that the bias is color (it recolors)",
    lam_means="consistency weight", batch_keys=("images", "labels", "cf_images"),
    images_per_example=2)
