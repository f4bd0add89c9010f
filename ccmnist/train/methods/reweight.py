"""Group reweighting and group-balanced sampling: every group counts as much as any other.

Idrissi, Arjovsky, Pezeshki and Lopez-Paz 2022, "Simple data balancing achieves competitive
worst-group-accuracy" (CLeaR). Their RWG is `balanced_sampling` here: their code
(facebookresearch/BalancingGroups, datasets.py) draws each epoch's examples with replacement
with weights N / n_g (torch's WeightedRandomSampler). `reweight` puts the same weights on the
loss instead (importance weighting, as e.g. Byrd and Lipton 2019, "What is the Effect of
Importance Weighting in Deep Learning?", study it).

Knows: the group of every train example, group = (digit, whether its color is the digit's cue):
groups.group_ids(labels, aligned).

Both use one weight per train example, w_i proportional to 1 / n_{g(i)} (n_g: the count of
group g in the train split), normalized to mean 1 over the split, so each group present carries
the same total weight.
- `reweight`: loss = mean_i w_i CE_i over the batch (its expectation over uniformly drawn
  batches is the group-balanced risk); w is fixed state in extra, [N], read by the batch's rows.
- `balanced_sampling`: batches drawn with replacement with probability w_i / N (every group
  equally likely), plain mean CE.
lam is unused by both. A group with no train example has no weight to carry.
"""

import jax.numpy as jnp
import numpy as np

from ccmnist.data import groups
from ccmnist.train import losses
from ccmnist.train.methods import base
from ccmnist.train.methods import erm


def group_weights(train_split) -> np.ndarray:
  """[N] float32: 1 / (the count of each example's group), scaled to mean 1 over the split."""
  ids = np.asarray(groups.group_ids(train_split["labels"], train_split["aligned"]))
  counts = np.asarray(groups.group_counts(train_split["labels"], train_split["aligned"]))
  inverse = 1.0 / counts[ids].astype(np.float64)
  return (inverse / inverse.mean()).astype(np.float32)


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  del config, settings, reference
  return {"weights": np.tile(group_weights(train_split), (len(reps), 1))}


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, step, warmup_steps, settings
  logits = base.logit_fn(model, params)(batch["images"])
  ce = losses.cross_entropy(logits=logits, labels=batch["labels"], reduction="none")
  weighted = jnp.mean(extra["weights"][batch["index"]] * ce)
  return weighted, base.ce_metrics(ce, logits, batch["labels"]), extra


def sample_weights(config, train_split) -> np.ndarray:
  """[N] probabilities: w_i / N, each group present equally likely."""
  del config
  w = group_weights(train_split).astype(np.float64)
  return w / w.sum()


_PAPER = ("Idrissi et al. 2022, 'Simple data balancing achieves competitive "
          "worst-group-accuracy'")
_KNOWS = "the group (digit x color aligned or not) of every train example"

METHOD = base.Method(
    name="reweight", loss=loss,
    summary="CE weighted by 1 / (train count of the example's group), mean weight 1",
    paper=_PAPER + " (RWG's weights, on the loss)", knows=_KNOWS,
    batch_keys=("images", "labels", "index"), init_extra=init_extra,
    benchmark=base.Benchmark(title="group reweighting", stop_early=True))
SAMPLING_METHOD = base.Method(
    name="balanced_sampling", loss=erm.loss,
    summary="plain CE on batches drawn with replacement so that every group is equally likely",
    paper=_PAPER + " (RWG, as their code samples)", knows=_KNOWS,
    sample_weights=sample_weights, benchmark=base.Benchmark(title="group-balanced sampling",
                                                            stop_early=True))
