"""Learning from Failure (LfF): a biased model trained to be biased reweights a debiased one.

Nam, Cha, Ahn, Lee and Shin 2020, "Learning from Failure: Training Debiased Classifier from
Biased Classifier" (NeurIPS 2020); the reference code is alinlab/LfF (train.py, module/loss.py,
util.py).

Knows nothing about the bias: it assumes the bias is what a model learns first. Two models of
the run's architecture train side by side (`Pair`): the biased one with the generalized
cross-entropy GCE(p, y) = (1 - p_y^q) / q, which favors the examples it already fits, and the
debiased one with CE weighted by each example's relative difficulty

  w_i = L_b(i) / (L_b(i) + L_d(i))    (no gradient through w)

where L_m(i) is an exponential moving average of model m's CE on example i (updated when i is
in a batch; the first update sets it), divided by the largest average among the examples of
i's class, as their code does. loss = mean(w * CE_d) + mean(GCE_b).

Settings: q (GCE's exponent, 0.7), alpha (the average's decay, 0.7). lam is unused.

Choices where the paper or code leaves room: GCE is the paper's (1 - p_y^q) / q, whose logit
gradient is p_y^q (p - onehot_y); their code's GCE is q p_y^q (detached) times CE, whose gradient
is q times that. One optimizer updates both models (they used two of the same kind and rate,
which for per-parameter optimizers is the same update). The evaluated model, the one __call__
returns, is the debiased one; its params sit at the top level, as a plain model's, so
evaluation, interpretation and DFR read it unchanged (and a seed initializes it as it does
the plain model: LfF and ERM of one seed start alike); the biased copy's are under 'biased'.
Not sliceable (the averages change each step); one example per row of a batch (no duplicate
rows within a batch, which the default epoch order guarantees).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.train import losses
from ccmnist.train.methods import base

DEFAULTS = {"q": 0.7, "alpha": 0.7}


class Pair(nn.Module):
  """The debiased model (what __call__ returns; its params at the top level) and a biased copy
  (params under 'biased'); init creates both."""
  debiased: nn.Module
  biased: nn.Module

  def setup(self):
    nn.share_scope(self, self.debiased)

  # On XLA:CPU the pair's replicas and passes are laid out as its model's (train/step.py).
  cpu_replica_map = property(lambda self: getattr(self.debiased, "cpu_replica_map", None))
  cpu_pass_images = property(lambda self: getattr(self.debiased, "cpu_pass_images", None))

  def __call__(self, x):
    if self.is_initializing():
      self.biased(x)
    return self.debiased(x)

  def both(self, x):
    """(biased logits, debiased logits)."""
    return self.biased(x), self.debiased(x)


def wrap_model(model: nn.Module) -> Pair:
  return Pair(debiased=model, biased=model.clone())


def generalized_cross_entropy(*, logits, labels, q: float, reduction: str = "mean"):
  """(1 - p_y^q) / q, with p = softmax(logits) (Zhang & Sabuncu 2018); q -> 0 gives CE."""
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  per_example = (1.0 - jnp.exp(q * log_p)) / q
  if reduction == "none":
    return per_example
  if reduction == "sum":
    return jnp.sum(per_example)
  if reduction == "mean":
    return jnp.mean(per_example)
  raise ValueError(f"Unknown reduction {reduction!r}; use one of {losses.REDUCTIONS}.")


def ema_update(ema, seen, index, values, alpha: float) -> tuple:
  """(ema, seen) with rows `index` moved to alpha * ema + (1 - alpha) * values, or set to
  values where not seen before (alinlab/LfF util.EMA)."""
  old = ema[index]
  new = jnp.where(seen[index], alpha * old + (1.0 - alpha) * values, values)
  return ema.at[index].set(new), seen.at[index].set(True)


def class_normalized(ema, all_labels, index, num_classes: int):
  """ema[index] divided by the largest ema among the examples of each one's class."""
  peak = jax.ops.segment_max(ema, all_labels, num_segments=num_classes)
  peak = jnp.where(peak > 0, peak, 1.0)  # A class whose averages are all 0 so far.
  return ema[index] / peak[all_labels[index]]


def difficulty_weights(loss_b, loss_d):
  """The relative difficulty L_b / (L_b + L_d) of LfF (their 1e-8 guards 0 / 0)."""
  return loss_b / (loss_b + loss_d + 1e-8)


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  del config, settings, reference
  labels = np.asarray(train_split["labels"], np.int32)
  k, n = len(reps), len(labels)
  return {"ema_b": np.zeros((k, n), np.float32), "ema_d": np.zeros((k, n), np.float32),
          "seen": np.zeros((k, n), bool), "labels": np.tile(labels, (k, 1))}


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, step, warmup_steps
  labels, index = batch["labels"], batch["index"]
  logits_b, logits_d = model.apply({"params": params}, batch["images"], method="both")
  ce_b = losses.cross_entropy(logits=logits_b, labels=labels, reduction="none")
  ce_d = losses.cross_entropy(logits=logits_d, labels=labels, reduction="none")
  alpha, c = settings["alpha"], logits_d.shape[-1]
  ema_b, seen = ema_update(extra["ema_b"], extra["seen"], index, jax.lax.stop_gradient(ce_b),
                           alpha)
  ema_d, _ = ema_update(extra["ema_d"], extra["seen"], index, jax.lax.stop_gradient(ce_d), alpha)
  w = jax.lax.stop_gradient(difficulty_weights(
      class_normalized(ema_b, extra["labels"], index, c),
      class_normalized(ema_d, extra["labels"], index, c)))
  gce = generalized_cross_entropy(logits=logits_b, labels=labels, q=settings["q"])
  total = jnp.mean(w * ce_d) + gce
  aux = {"ce": jnp.mean(ce_d), "penalty": gce, "accuracy": base.accuracy(logits_d, labels),
         "biased_accuracy": base.accuracy(logits_b, labels), "weight": jnp.mean(w)}
  return total, aux, {**extra, "ema_b": ema_b, "ema_d": ema_d, "seen": seen}


def check(config, *, settings) -> None:
  del config
  given = settings
  if not 0 < given["q"] <= 1:
    raise ValueError(f"config.loss.settings.q={given['q']}: GCE's exponent lies in (0, 1] "
                     "(LfF uses 0.7).")
  if not 0 <= given["alpha"] < 1:
    raise ValueError(f"config.loss.settings.alpha={given['alpha']}: the loss average's decay "
                     "lies in [0, 1) (LfF uses 0.7).")


METHOD = base.Method(
    name="lff", loss=loss,
    summary="a GCE-trained biased twin; CE weighted by relative difficulty L_b / (L_b + L_d)",
    paper="Nam et al. 2020, 'Learning from Failure: Training Debiased Classifier from Biased "
          "Classifier'",
    knows="nothing about the bias (assumes it is learned first)", lam_means="unused",
    batch_keys=("images", "labels", "index"), images_per_example=2, sliceable=False,
    defaults=DEFAULTS, init_extra=init_extra, check=check, wrap_model=wrap_model,
    benchmark=base.Benchmark(title="LfF"))
