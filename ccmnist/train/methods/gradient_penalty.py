"""The study's input-gradient penalty, and its chromatic-only variant.

CE + lam * mean((d logit_y / d x)^2): double backprop through the input gradient.
"""

from ccmnist.train import losses
from ccmnist.train.methods import base


def _loss(penalty_fn):
  """The method's loss: CE + lam * penalty_fn (losses.input_gradient_penalty or
  losses.color_gradient_penalty)."""
  def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
    del step, warmup_steps
    logit_fn = base.logit_fn(model, params)
    images, labels = batch["images"], batch["labels"]
    logits = logit_fn(images)
    penalty = penalty_fn(logit_fn=logit_fn, images=images, labels=labels,
                         scale=settings["grad_scale"])
    ce = losses.cross_entropy(logits=logits, labels=labels)
    return ce + lam * penalty, base.ce_metrics(ce, logits, labels, penalty), extra
  return loss


METHOD = base.Method(
    name="gradient_penalty", loss=_loss(losses.input_gradient_penalty),
    summary="CE + lam * mean squared input gradient of the correct logit",
    paper="the study (after Ross & Doshi-Velez 2018, 'Right for the right reasons')",
    lam_means="penalty weight",
    benchmark=base.Benchmark(title="input-gradient penalty (the study's)",
                             grid=(10.0, 100.0, 1000.0), quick_grid=(100.0,)))
COLOR_METHOD = base.Method(
    name="color_gradient_penalty", loss=_loss(losses.color_gradient_penalty),
    summary="CE + lam * mean squared chromatic part of the input gradient",
    paper="ours: the study's penalty on the non-grey part only",
    knows="that the bias is color", lam_means="penalty weight")
