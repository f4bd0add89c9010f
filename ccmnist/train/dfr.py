"""Deep Feature Reweighting (DFR): a run's last layer refit on a group-balanced held-out set.

Kirichenko, Izmailov and Wilson 2022, "Last Layer Re-Training is Sufficient for Robustness to
Spurious Correlations" (ICLR 2023); reference code PolinaKirichenko/deep_feature_reweighting
(dfr_evaluate_spurious.py, "DFR on validation").

Knows: the group (digit, whether its color is the digit's cue; data/groups.py) of every example
of a held-out split, by default val_balanced (rho 0.5: config.data.val_balanced_size), and uses
that split to fit. Everything but the last layer stays as the base run trained it.

refit(base_workdir, workdir, reg_grid=...) takes the base run's replicas at one lambda (one per
seed), draws for each a group-balanced subset of the held-out split (groups.balanced_subset:
per_group examples of each of the 20 groups, drawn from the replica's seed), computes the
features entering the model's head (the Dense layer whose output the model returns; found by
intercepting the forward pass, so any model with a linear head works) and fits the head again,
from zero, by full-batch L2-regularized multinomial logistic regression:

  minimize  mean_i CE(z_i W + b, y_i) + reg / 2 * ||W||^2      (b not penalized)

on standardized features z = (x - mean) / std, mean and std of the subset itself (as DFR's
tuning code, dfr_on_validation_tune, does; a feature constant on the subset keeps std 1, as
in sklearn's StandardScaler), by `steps` L-BFGS steps (optax); the standardization is then folded
into the refit kernel and bias, so the refit model is the base model with a new head. reg is
the L2 strength per example: sklearn's C on the same subset is 1 / (reg * n). Every (grid
point, seed) pair is fit in one compiled program. DFR's published runs use L1 and several
retrains on fresh subsets averaged; this is one L2 fit per seed and strength.

The DFR workdir reads like a training workdir (train/runs.py): replica r = g * num_seeds + s
is base seed s refit at reg_grid[g], so the replicas' lambda is the L2 strength.
  DIR/config.json        the base run's config with loss.lam_grid = reg_grid, and `dfr`: the
                         base workdir, its lambda and the settings of the fit
  DIR/checkpoints/       one checkpoint: the base params with the refit head (runs.load_run)
  DIR/refit.npz          kernel [K, D, C], bias [K, C] (on raw features), rows [S, m] (the
                         subset of each seed), and the head's path in the params
  DIR/metrics.jsonl      one row: the accuracies, the fit's time as the epoch's
  DIR/predictions.npz    every split's predictions (the fit split's are in-sample)
  DIR/results.json       runs.summarize of the one "epoch", plus `dfr`: split, subset size
A finished refit (results.json) is returned at once; an unfinished one is recomputed.
"""

import json
import pathlib
import time

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from ccmnist import models
from ccmnist.data import groups
from ccmnist.data import splits as splits_lib
from ccmnist.train import losses
from ccmnist.train import runs
from ccmnist.train.methods import dfr as dfr_method
from ccmnist.util import batches
from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib

DEFAULT_SPLIT = dfr_method.DEFAULTS["split"]
DEFAULT_STEPS = dfr_method.DEFAULTS["steps"]
# How the (grid point, seed) fits share one program: 'vmap' batches them; 'map' (lax.map) runs
# them one after another, which on XLA:CPU runs far faster than the batched L-BFGS line search.
# None picks by backend.
FIT_MAP = None


# ---------------------------------------------------------------- the head and its inputs

def _dense_calls(calls: list):
  """An interceptor that appends (path, input, output) of every nn.Dense call to `calls`."""
  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
      calls.append((tuple(context.module.scope.path), args[0], out))
    return out
  return interceptor


def _head_call(model, params, images) -> tuple:
  """(path, features, logits) of the Dense layer whose output `model` returns."""
  calls = []
  with nn.intercept_methods(_dense_calls(calls)):
    logits = model.apply({"params": params}, images)
  if not calls or calls[-1][2] is not logits:
    raise ValueError(f"{type(model).__name__} does not return a Dense layer's output; DFR "
                     "refits a linear head, so use a model that ends in one.")
  return calls[-1][0], calls[-1][1], logits


def head_path(model, params, image_shape) -> tuple:
  """The path in params of the model's head (the Dense layer whose output it returns), traced
  on images of image_shape (H, W, C)."""
  out = []
  jax.eval_shape(lambda p: out.append(_head_call(model, p, models.dummy_input(image_shape))[0]),
                 params)
  return out[0]


def head_features(model, params, images):
  """[B, D] float32: what enters the model's head (images in pixels)."""
  return _head_call(model, params, images.astype(jnp.float32))[1]


def get_path(tree, path):
  for name in path:
    tree = tree[name]
  return tree


def replace_path(tree, path, value):
  """A copy of the nested dict `tree` with tree[path[0]][path[1]]... = value."""
  if not path:
    return value
  return {**tree, path[0]: replace_path(tree[path[0]], path[1:], value)}


# ---------------------------------------------------------------- the fit

def standardizer(x):
  """(mean [D], std [D]) over the rows of x; std 1 where a feature is constant, up to the
  rounding of its mean (as sklearn's StandardScaler: rounding noise is not rescaled to 1)."""
  mean, std = jnp.mean(x, axis=0), jnp.std(x, axis=0)
  constant = std <= 10 * jnp.finfo(x.dtype).eps * jnp.abs(mean)
  return mean, jnp.where(constant | (std == 0), 1.0, std)


def objective(head, x, labels, reg):
  """mean CE of the linear head (kernel, bias) on x + reg / 2 * ||kernel||^2."""
  kernel, bias = head
  ce = losses.cross_entropy(logits=x @ kernel + bias, labels=labels)
  return ce + 0.5 * reg * jnp.sum(jnp.square(kernel))


def fit_head(x, labels, reg, *, num_classes: int, steps: int):
  """(kernel [D, C], bias [C]) on the raw features x [n, D]: `steps` L-BFGS steps from zero on
  the standardized features, the standardization folded back into the result."""
  mean, std = standardizer(x)
  z = (x - mean) / std
  fun = lambda head: objective(head, z, labels, reg)
  head = (jnp.zeros((x.shape[1], num_classes), x.dtype), jnp.zeros((num_classes,), x.dtype))
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def body(carry, _):
    head, state = carry
    value, grad = value_and_grad(head, state=state)
    updates, state = opt.update(grad, state, head, value=value, grad=grad, value_fn=fun)
    return (optax.apply_updates(head, updates), state), None
  ((kernel, bias), _), _ = jax.lax.scan(body, (head, opt.init(head)), None, length=steps)
  return kernel / std[:, None], bias - (mean / std) @ kernel


def fit_map_mode() -> str:
  return FIT_MAP or ("map" if jax.default_backend() == "cpu" else "vmap")


def fit_heads(x_SnD, labels_Sn, reg_grid, *, num_classes: int, steps: int) -> tuple:
  """(kernel [R*S, D, C], bias [R*S, C]): row g * S + s fits seed s's features x_SnD[s] at
  reg_grid[g], all in one program."""
  x_SnD, labels_Sn = jnp.asarray(x_SnD, jnp.float32), jnp.asarray(labels_Sn, jnp.int32)
  s = x_SnD.shape[0]
  regs = jnp.repeat(jnp.asarray(reg_grid, jnp.float32), s)
  seeds = jnp.tile(jnp.arange(s), len(reg_grid))
  return _fit_all(x_SnD, labels_Sn, seeds, regs, num_classes=num_classes, steps=steps,
                  mode=fit_map_mode())


def _fit_one(x_SnD, labels_Sn, seed, reg, *, num_classes, steps):
  return fit_head(x_SnD[seed], labels_Sn[seed], reg, num_classes=num_classes, steps=steps)


def _fit_all_impl(x_SnD, labels_Sn, seeds, regs, *, num_classes, steps, mode):
  one = lambda seed, reg: _fit_one(x_SnD, labels_Sn, seed, reg, num_classes=num_classes,
                                   steps=steps)
  if mode == "vmap":
    return jax.vmap(one)(seeds, regs)
  return jax.lax.map(lambda a: one(*a), (seeds, regs))


_fit_all = jax.jit(_fit_all_impl, static_argnames=("num_classes", "steps", "mode"))


# ---------------------------------------------------------------- the workdir

def dfr_config(base_config, base_workdir, *, reg_grid, steps, split, per_group, base_lam):
  """The DFR workdir's config: the base run's, lambda grid = reg_grid, and `dfr`."""
  c = ml_collections.ConfigDict(base_config.to_dict())
  c.loss.lam_grid = tuple(float(r) for r in reg_grid)
  c.loss.lam = float(reg_grid[0])
  c.dfr = ml_collections.ConfigDict(dict(
      base=str(pathlib.Path(base_workdir).resolve()), base_lam=float(base_lam),
      reg_grid=tuple(float(r) for r in reg_grid), steps=int(steps), split=split,
      per_group=int(per_group or 0), standardize=True))
  c.lock()
  return c


def _check_args(reg_grid, steps, split, per_group, base_workdir, workdir):
  if not reg_grid or any(not float(r) >= 0 for r in reg_grid):
    raise ValueError(f"DFR's reg_grid must be a non-empty list of L2 strengths >= 0; got "
                     f"{reg_grid!r}.")
  if int(steps) < 1:
    raise ValueError(f"DFR needs steps >= 1 L-BFGS steps; got {steps}.")
  if split not in splits_lib.SPLIT_NAMES or split == "train":
    raise ValueError(f"DFR fits on a held-out split, one of "
                     f"{[n for n in splits_lib.SPLIT_NAMES if n != 'train']}; got {split!r}.")
  if per_group is not None and int(per_group) < 1:
    raise ValueError(f"per_group must be >= 1 (or None: the smallest group's size); got "
                     f"{per_group}.")
  if pathlib.Path(base_workdir).resolve() == pathlib.Path(workdir).resolve():
    raise ValueError(f"DFR writes a new workdir beside the base run; {workdir} is the base "
                     "run's own, pass another.")


def balanced_rows(split: dict, seeds, per_group=None) -> np.ndarray:
  """int [S, m]: each seed's group-balanced subset of `split` (sorted rows)."""
  return np.stack([groups.balanced_subset(split["labels"], split["aligned"],
                                          np.random.default_rng([int(seed), 4]), per_group)
                   for seed in seeds])


def refit(base_workdir, workdir, *, reg_grid, steps: int = DEFAULT_STEPS,
          split: str = DEFAULT_SPLIT, per_group: int | None = None,
          base_lam: float | None = None) -> dict:
  """Refits the head of every seed of the base run at every L2 strength; returns results.json.

  base_lam: the base grid point whose replicas are refit (default its headline lambda).
  per_group: examples of each group in the balanced subset (None: the smallest group's size).
  The module docstring describes the fit and the workdir it writes.
  """
  _check_args(reg_grid, steps, split, per_group, base_workdir, workdir)
  base_config = runs.load_config(base_workdir)
  if split.startswith("val") and not splits_lib.field(base_config.data, f"{split}_size"):
    raise ValueError(f"The base run's data has no {split!r} split; train the base with "
                     f"config.data.{split}_size > 0 (or refit on another held-out split).")
  base_lam = runs.headline_lam(base_config) if base_lam is None else float(base_lam)
  idx = [runs.replica_of(base_config, base_lam, s) for s in range(base_config.num_seeds)]
  config = dfr_config(base_config, base_workdir, reg_grid=reg_grid, steps=steps, split=split,
                      per_group=per_group, base_lam=base_lam)
  workdir = workdir_lib.claim_workdir(config, workdir)
  try:
    results_path = workdir / "results.json"
    if results_path.exists():
      return io.read_json(results_path)
    return _refit(config, base_workdir, workdir, idx)
  finally:
    workdir_lib.release_workdir(workdir)


def _refit(config, base_workdir, workdir: pathlib.Path, idx: list) -> dict:
  d = config.dfr
  splits = splits_lib.get_splits(config.data)
  model, base_params, _ = runs.load_run(base_workdir, replica=None)
  params_S = jax.tree_util.tree_map(lambda x: x[np.asarray(idx)], base_params)
  seeds = [config.seed + s for s in range(config.num_seeds)]
  held = splits[d.split]
  rows = balanced_rows(held, seeds, d.per_group or None)
  path = head_path(model, jax.tree_util.tree_map(lambda x: x[0], params_S),
                   splits_lib.image_shape(held))
  num_classes = get_path(params_S, path)["kernel"].shape[-1]
  features = jax.jit(lambda p, x: head_features(model, p, x))
  bs = config.train.eval_batch_size
  param = lambda s: jax.tree_util.tree_map(lambda x: x[s], params_S)

  t0 = time.perf_counter()
  x_SnD = np.stack([batches.map_batches(lambda x, s=s: features(param(s), jnp.asarray(x)),
                                        (held["images"][r],), batch_size=bs)
                    for s, r in enumerate(rows)])
  labels_Sn = np.asarray(held["labels"])[rows]
  kernel, bias = jax.device_get(fit_heads(x_SnD, labels_Sn, d.reg_grid, num_classes=num_classes,
                                          steps=d.steps))
  if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
    raise FloatingPointError("The DFR fit diverged (non-finite head); raise the L2 strengths "
                             "in reg_grid.")
  fit_time = time.perf_counter() - t0
  logging.info("DFR: %d heads refit on %d %s examples each in %.1fs.", len(kernel),
               rows.shape[1], d.split, fit_time)

  k = len(kernel)
  seed_of = np.arange(k) % config.num_seeds
  params_K = jax.tree_util.tree_map(lambda x: np.asarray(x)[seed_of], params_S)
  params_K = replace_path(params_K, path, {"kernel": jnp.asarray(kernel),
                                           "bias": jnp.asarray(bias)})
  preds, accuracy = _predict_all(model, params_S, kernel, bias, splits, bs)
  row = {"epoch": 1, "step": d.steps, "accuracy": accuracy, "epoch_time_s": fit_time}
  io.write_text(workdir / "metrics.jsonl", json.dumps(row) + "\n")
  runs.save_predictions(workdir, preds)
  io.write_npz(workdir / "refit.npz", kernel=kernel, bias=bias, rows=rows,
               head_path=np.asarray(path))
  _save_checkpoint(config, workdir, params_K)
  results = runs.summarize(config, [row])
  results["dfr"] = {"base": d.base, "base_lam": d.base_lam, "split": d.split,
                    "subset_size": int(rows.shape[1]), "num_heads": k}
  io.write_json(workdir / "results.json", results)
  return results


def _predict_all(model, params_S, kernel, bias, splits, batch_size) -> tuple:
  """({split: int8 [K, n]}, {split: [K] accuracies}) of the refit heads: head k = g * S + s
  on seed s's features (computed once per seed)."""
  num_seeds = jax.tree_util.tree_leaves(params_S)[0].shape[0]
  predict = jax.jit(lambda p, w, b, x: jnp.argmax(
      jnp.einsum("nd,rdc->rnc", head_features(model, p, x), w) + b[:, None], -1))
  preds, accuracy = {}, {}
  for name in splits_lib.SPLIT_NAMES:
    if name not in splits:
      continue
    out = np.zeros((len(kernel), len(splits[name]["labels"])), np.int8)
    for s in range(num_seeds):
      p = jax.tree_util.tree_map(lambda x, s=s: x[s], params_S)
      w, b = jnp.asarray(kernel[s::num_seeds]), jnp.asarray(bias[s::num_seeds])
      out[s::num_seeds] = batches.map_batches(
          lambda x, p=p, w=w, b=b: predict(p, w, b, jnp.asarray(x)), (splits[name]["images"],),
          batch_size=batch_size, axis=1)
    preds[name] = out
    accuracy[name] = np.mean(out == np.asarray(splits[name]["labels"])[None], axis=1).tolist()
  return preds, accuracy


def _save_checkpoint(config, workdir, params_K) -> None:
  """checkpoints/1: a TrainState of the refit params, so runs.load_run reads the workdir."""
  model, tx, _ = runs.build(config)
  state = runs.init_state(config, model, tx)
  state = state.replace(params=jax.tree_util.tree_map(
      lambda new, old: jnp.asarray(new, old.dtype), params_K, state.params))
  mngr = runs.checkpoint_manager(workdir)
  try:
    for step in mngr.all_steps():  # Left by an unfinished refit: replaced.
      mngr.delete(step)
    mngr.save(1, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()
  finally:
    mngr.close()
