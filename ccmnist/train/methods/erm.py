"""Empirical risk minimization: the mean cross-entropy, nothing else."""

from ccmnist.train import losses
from ccmnist.train.methods import base


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, step, warmup_steps, settings
  logits = base.logit_fn(model, params)(batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"])
  return ce, base.ce_metrics(ce, logits, batch["labels"]), extra


METHOD = base.Method(
    name="erm", loss=loss, summary="mean cross-entropy",
    paper="Vapnik 1992 (the study's baseline)",
    benchmark=base.Benchmark(title="ERM"))
