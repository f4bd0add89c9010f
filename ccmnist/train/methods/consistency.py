"""The study's counterfactual consistency: CE + lam * mean((f(x) - f(x_cf))^2), after warmup.

x_cf is the same grey digit in another color; the term is off for config.loss.warmup_epochs.
"""

import jax.numpy as jnp

from ccmnist.train import losses
from ccmnist.train.methods import base


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del settings
  on = (step >= warmup_steps).astype(jnp.float32)
  both = base.logit_fn(model, params)(jnp.concatenate([batch["images"], batch["cf_images"]]))
  logits, cf_logits = jnp.split(both, 2)
  penalty = losses.consistency(logits=logits, cf_logits=cf_logits) * on
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"])
  return ce + lam * penalty, base.ce_metrics(ce, logits, batch["labels"], penalty), extra


METHOD = base.Method(
    name="consistency", loss=loss,
    summary="CE + lam * squared logit gap to a recolored partner, after warmup epochs",
    paper="the study", knows="that the bias is color (it recolors)",
    lam_means="consistency weight", batch_keys=("images", "labels", "cf_images"),
    images_per_example=2,
    benchmark=base.Benchmark(title="counterfactual consistency (the study's)",
                             grid=(0.1, 0.5, 2.0), quick_grid=(0.5, 2.0)))
