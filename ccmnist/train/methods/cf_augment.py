"""Counterfactual augmentation: the study's recolored partners as extra training images.

The ablation of the study's counterfactual consistency (consistency.py) that keeps its data and
drops its loss ("is it the loss or the data?"): each batch trains on its B images and their B
partners x_cf (the same grey digit in another color, `cf_images`), each with the digit's label;
loss = the mean CE over the 2B images, no consistency term. Accuracy is the originals'.

Knows: that the bias is color (its partners are recolored). lam is unused.
"""

import jax.numpy as jnp

from ccmnist.train import losses
from ccmnist.train.methods import base


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, step, warmup_steps, settings
  images = jnp.concatenate([batch["images"], batch["cf_images"]])
  labels = jnp.concatenate([batch["labels"], batch["labels"]])
  logits = base.logit_fn(model, params)(images)
  ce = losses.cross_entropy(logits=logits, labels=labels)
  n = batch["labels"].shape[0]  # Accuracy on the originals.
  return ce, base.ce_metrics(ce, logits[:n], batch["labels"]), extra


METHOD = base.Method(
    name="cf_augment", loss=loss,
    summary="mean CE over the batch and its recolored partners, no consistency term",
    paper="ours: the study's counterfactual data without its consistency loss",
    knows="that the bias is color (it trains on recolored partners)",
    batch_keys=("images", "labels", "cf_images"), images_per_example=2,
    benchmark=base.Benchmark(title="counterfactual augmentation (no consistency)"))
