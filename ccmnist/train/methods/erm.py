"""Empirical risk minimization: the mean cross-entropy, nothing else."""

from ccmnist.train import losses
from ccmnist.train.methods import base


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del step, warmup_steps, settings
  total, aux = losses.total_loss(logit_fn=base.logit_fn(model, params), images=batch["images"],
                                 labels=batch["labels"], name="erm", lam=lam)
  return total, aux, extra


METHOD = base.Method(
    name="erm", loss=loss, summary="mean cross-entropy",
    paper="Vapnik 1992 (the study's baseline)")
