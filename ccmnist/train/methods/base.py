"""What a training method is: a pure loss, the arrays it reads, and the state it keeps.

A method plugs into the one jitted train step (train/step.py) without the step knowing its
internals. The step calls, for one replica and one batch,

  loss(model=, params=, batch=, lam=, extra=, step=, warmup_steps=, settings=)
      -> (loss, aux, extra)

and differentiates `loss` with respect to `params`:
  batch    {key: [B, ...]} for every key of `batch_keys`: the train split's arrays gathered at
           the batch's rows (images and cf_images as float32 pixels), and 'index', the rows.
  lam      the replica's grid value (config.loss.lam_grid): the method's main hyper-parameter,
           traced, so a grid trains in one program. `lam_means` says what it is.
  extra    the method's own state for this replica (group weights, a loss moving average, fixed
           per-example weights, environments, a random key): a pytree the method returns
           updated, checkpointed with the params. `init_extra` makes it for every replica.
  step     the optimizer step (traced int), warmup_steps = config.loss.warmup_epochs x steps
           per epoch, for methods that switch a term on late.
  settings the method's fixed settings: its `defaults` overridden by config.loss.settings
           (a plain dict, static).
aux holds float scalars (at least 'ce', 'penalty', 'accuracy'); they become train metrics.

A method is `sliceable` when its loss is a mean over examples and it leaves `extra` unchanged:
only then may a batch be computed in slices whose gradients are averaged (step.num_passes).

Its hooks get the config, and its settings resolved (methods.settings_of):
  init_extra(config, train_split, reps, *, settings, reference) -> extra [K, ...]
  check(config, *, settings)
`reference` is the finished run the method reads (train/reference.py), None when it names no
`reference` setting. A method of kind 'refit' is not trained: it refits a trained run (DFR,
train/dfr.py), and has no loss.

A method is one module and one line in methods/__init__.py; its `benchmark` (title, lambda
grids, warmup, the run it needs) is what configs/zoo.py makes its benchmark entry from, and
tests/test_methods_registered.py trains every registered method.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.train import losses


KINDS = ("train", "refit")


def no_extra(config, train_split, reps, *, settings, reference) -> dict:
  """The state of a method that keeps none."""
  del config, train_split, reps, settings, reference
  return {}


def no_check(config, *, settings) -> None:
  del config, settings


def warmup_of(fraction: float, epochs: int, *, default: int = 0) -> int:
  """Warmup epochs of a run of `epochs` epochs: round(fraction x epochs), at least 1 and less
  than epochs when fraction > 0 (the term is on for part of the run), else `default`."""
  if fraction <= 0:
    return default
  return min(max(round(fraction * epochs), 1), max(epochs - 1, 1))


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """How the benchmark (configs/zoo.py) runs a method.

  title: its row in the report. grid: its lambda grid in the full profile; quick_grid: in the
  quick and tiny ones (None: the full grid). warmup_epochs: config.loss.warmup_epochs.
  warmup_fraction: when > 0, the warmup as a share of the run's epochs instead (warmup_of), for
  a method whose paper switches a term on at a point of its training (IRM's code: step 190 of
  501), the same share whatever the protocol's epoch count.
  needs: the benchmark entry whose run (same cell, data and seeds) is trained first: the run a
  refit refits, or the one whose workdir goes into the method's `reference` setting.
  stop_early: its paper stops training at the epoch its held-out selection picks (Group DRO,
  JTT, and the reweighting baselines they are compared with): each seed is read at its best
  evaluated epoch on its selection rule's split (ccmnist/zoo/select.py), not at its last.
  """
  title: str
  grid: tuple = (0.0,)
  quick_grid: tuple | None = None
  warmup_epochs: int = 0
  warmup_fraction: float = 0.0
  needs: str = ""
  stop_early: bool = False

  def warmup_of(self, epochs: int) -> int:
    """config.loss.warmup_epochs of a run of `epochs` epochs: round(warmup_fraction x epochs),
    at least 1 and less than epochs when the fraction is set (the term is on for part of the
    run), else warmup_epochs."""
    return warmup_of(self.warmup_fraction, epochs, default=self.warmup_epochs)

  def grid_of(self, size: str) -> tuple:
    """The lambda grid of a profile ('full', 'quick' or 'tiny')."""
    return self.grid if size == "full" or self.quick_grid is None else self.quick_grid


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
  """A training method; see the module docstring for the loss's contract.

  name: its config.loss.name. summary / paper / knows / lam_means: documentation printed by the
  benchmark (what it does, the paper, what it needs to know about the bias, what lam is).
  batch_keys: the train arrays a batch carries ('index' for the rows themselves).
  images_per_example: forward passes one example costs (2 when a partner image is also run).
  defaults: its settings and their defaults (config.loss.settings overrides them).
  init_extra(config, train_split, reps, *, settings, reference) -> pytree with a leading [K]
    replica axis (numpy).
  sample_weights(config, train_split) -> [N] probabilities of drawing each example into a batch
    (drawn with replacement), or None for the default: every example once per epoch.
  epoch_pool(config, train_split, extra, reps) -> (pool [K, M] int32 train rows, sizes [K]):
    replica r trains on the dataset pool[r, :sizes[r]] (rows repeated as often as they appear;
    the rest is padding), streamed in successive random permutations of it
    (loop.epoch_orders); an epoch keeps its N // batch steps. None: the train split itself.
    extra: init_extra's state (numpy, [K, ...]); reps: runs.replicas(config).
  check(config, *, settings): raises ValueError, saying what to fix, on settings the method
    cannot use.
  wrap_model(model) -> the module the method trains (LfF trains a second, biased model beside
    the one evaluated), or None.
  kind: 'train' (a loss the step trains) or 'refit' (a trained run refit; no loss).
  reference: the setting that holds its reference run's workdir ('' when it reads none).
  inferred_split: the key of init_extra's state that holds the train examples a method told
    nothing of the bias singles out ([K, N], nonzero: singled out; JTT's error set, EIIL's
    environment 1), which the loop sets against the bias (split_against_bias); '' for none.
  benchmark: its entry in the benchmark (Benchmark), None when it is not one of the zoo.
  """
  name: str
  loss: Callable[..., tuple]
  summary: str = ""
  paper: str = ""
  knows: str = "nothing about the bias"
  lam_means: str = "unused"
  batch_keys: tuple = ("images", "labels")
  images_per_example: int = 1
  sliceable: bool = True
  defaults: Any = dataclasses.field(default_factory=dict)
  init_extra: Callable[..., Any] = no_extra
  sample_weights: Callable[..., Any] | None = None
  epoch_pool: Callable[..., Any] | None = None
  check: Callable[[Any], None] = no_check
  wrap_model: Callable[[nn.Module], nn.Module] | None = None
  kind: str = "train"
  reference: str = ""
  inferred_split: str = ""
  benchmark: Benchmark | None = None


def split_against_bias(marked, aligned) -> dict:
  """How a method's split of the train examples lines up with the bias it was not told of.

  marked: [K, N], nonzero where replica r singles example i out; aligned: bool [N], whether
  example i's color is its digit's cue (read here only to describe the split, never to train).
  Per replica: the share of train marked, the bias-conflicting share among the marked and among
  the rest, and the share of all conflicting examples that are marked. A split blind to the bias
  has both conflicting shares near the train split's own.
  """
  marked = np.asarray(marked) != 0
  conflicting = ~np.asarray(aligned, bool)
  share = lambda rows: float(conflicting[rows].mean()) if rows.any() else None
  return {"train_conflicting_share": float(conflicting.mean()),
          "replicas": [{"marked_share": float(m.mean()),
                        "conflicting_in_marked": share(m),
                        "conflicting_in_rest": share(~m),
                        "conflicting_marked": (float((m & conflicting).sum() / conflicting.sum())
                                               if conflicting.any() else None)}
                       for m in marked]}


def repeat_pool(counts) -> tuple:
  """(pool [K, M] int32, sizes [K] int32) of per-example repeat counts [K, N] (ints >= 0):
  row r holds train row i counts[r, i] times, in row order, padded with 0 to the longest."""
  counts = np.asarray(counts, np.int64)
  sizes = counts.sum(axis=1)
  pool = np.zeros((len(counts), int(sizes.max())), np.int32)
  for r, c in enumerate(counts):
    pool[r, :sizes[r]] = np.repeat(np.arange(len(c), dtype=np.int32), c)
  return pool, sizes.astype(np.int32)


def logit_fn(model: nn.Module, params) -> Callable:
  """x -> logits of `model` with `params`."""
  return lambda x: model.apply({"params": params}, x)


def accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def ce_metrics(ce, logits, labels, penalty=None) -> dict:
  """The aux every method reports: the mean CE, its penalty (0 when it has none), accuracy."""
  return {"ce": jnp.mean(ce), "penalty": jnp.zeros(()) if penalty is None else penalty,
          "accuracy": accuracy(logits, labels)}


def step_key(extra, step):
  """The step's key of a method that keeps a per-replica key (its data) in extra['key']."""
  return jax.random.fold_in(jax.random.wrap_key_data(extra["key"]), step)


def ce_on(model, params, images, labels, extra):
  """(loss, aux, extra) of a method whose loss is the mean CE on the images it made."""
  logits = logit_fn(model, params)(images)
  ce = losses.cross_entropy(logits=logits, labels=labels)
  return ce, ce_metrics(ce, logits, labels), extra
