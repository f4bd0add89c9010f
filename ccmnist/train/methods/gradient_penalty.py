"""The study's input-gradient penalty, and its chromatic-only variant.

CE + lam * mean((d logit_y / d x)^2): double backprop through the input gradient.
"""

from ccmnist.train import losses
from ccmnist.train.methods import base


def _loss(name):
  def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
    del step, warmup_steps
    total, aux = losses.total_loss(
        logit_fn=base.logit_fn(model, params), images=batch["images"], labels=batch["labels"],
        name=name, lam=lam, grad_scale=settings["grad_scale"])
    return total, aux, extra
  return loss


METHOD = base.Method(
    name="gradient_penalty", loss=_loss("gradient_penalty"),
    summary="CE + lam * mean squared input gradient of the correct logit",
    paper="the study (after Ross & Doshi-Velez 2018, 'Right for the right reasons')",
    lam_means="penalty weight")
COLOR_METHOD = base.Method(
    name="color_gradient_penalty", loss=_loss("color_gradient_penalty"),
    summary="CE + lam * mean squared chromatic part of the input gradient",
    paper="ours: the study's penalty on the non-grey part only",
    knows="that the bias is color", lam_means="penalty weight")
