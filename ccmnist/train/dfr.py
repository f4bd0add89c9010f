"""Deep Feature Reweighting (DFR): a run's last layer refit on a group-balanced held-out set.

Kirichenko, Izmailov and Wilson 2022, "Last Layer Re-Training is Sufficient for Robustness to
Spurious Correlations" (ICLR 2023); reference code PolinaKirichenko/deep_feature_reweighting
(dfr_evaluate_spurious.py, "DFR on validation").

Knows: the group (digit, whether its color is the digit's cue; data/groups.py) of every example
of a held-out split, by default val_balanced (rho 0.5: config.data.val_balanced_size), and uses
that split to fit. Everything but the last layer stays as the base run trained it.

refit(base_workdir, workdir, reg_grid=...) takes the base run's replicas at one lambda (one per
seed), draws for each num_subsets group-balanced subsets of the held-out split
(groups.balanced_subset: per_group examples of each of the 20 groups, drawn from the replica's
seed), computes the features entering the model's head (the Dense layer whose output the model
returns; found by intercepting the forward pass, so any model with a linear head works) and fits
the head again, from zero, on each subset by full-batch regularized multinomial logistic
regression, penalty 'l1' (DFR's, by default) or 'l2':

  minimize  mean_i CE(z_i W + b, y_i) + reg * ||W||_1           (l1: FISTA, soft-thresholding)
  minimize  mean_i CE(z_i W + b, y_i) + reg / 2 * ||W||^2       (l2: L-BFGS, optax)
                                                                 (b not penalized)

on standardized features z = (x - mean) / std, mean and std of the subset itself (as DFR's
tuning code, dfr_on_validation_tune, does; a feature constant on the subset keeps std 1, as
in sklearn's StandardScaler), by `steps` optimizer steps; the standardization is then folded
into the refit kernel and bias, and the heads of a seed's subsets are averaged (kernel and
bias), as DFR's dfr_on_validation_eval averages its retrains' coef_ and intercept_. So the refit
model is the base model with a new head, fit on held-out rows only: the train split never
enters. reg is the strength per example: sklearn's C on the same subset is 1 / (reg * n), for
either penalty. Every (grid point, seed, subset) fit runs in one compiled program.

Where this differs from the authors' code: it uses sklearn's liblinear with L1 (which also
penalizes the intercept, and for several classes fits one-vs-rest), 20 retrains in its
evaluation (dfr_on_validation_eval; 10 in dfr_train_subset_eval) with features standardized on
the whole train split's embeddings there; here the benchmark averages num_subsets = 10 subsets,
each standardized on itself, so nothing but held-out rows is read.

The DFR workdir reads like a training workdir (train/runs.py): replica r = g * num_seeds + s
is base seed s refit at reg_grid[g], so the replicas' lambda is the regularization strength.
  DIR/config.json        the base run's config with loss.lam_grid = reg_grid, and `dfr`: the
                         base workdir, its lambda and the settings of the fit
  DIR/checkpoints/       one checkpoint: the base params with the refit head (runs.load_run)
  DIR/refit.npz          kernel [K, D, C], bias [K, C] (on raw features, averaged over the
                         subsets), rows [S * J, m] (row s * J + j: seed s's subset j), and the
                         head's path in the params
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
DEFAULT_PENALTY = dfr_method.DEFAULTS["penalty"]
DEFAULT_SUBSETS = dfr_method.DEFAULTS["num_subsets"]
PENALTIES = ("l1", "l2")
# Optimizer steps of a fit when `steps` is None: L-BFGS for l2; FISTA, whose steps are cheaper
# and converge more slowly, for l1.
DEFAULT_STEPS = {"l2": 100, "l1": 500}
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


def soft_threshold(w, t):
  """The proximal map of t * ||w||_1: each entry moved t toward 0, and 0 within t of it."""
  return jnp.sign(w) * jnp.maximum(jnp.abs(w) - t, 0.0)


def _fit_l2(z, labels, reg, *, num_classes: int, steps: int):
  """(kernel, bias) on standardized z: `steps` L-BFGS steps from zero on objective."""
  fun = lambda head: objective(head, z, labels, reg)
  head = (jnp.zeros((z.shape[1], num_classes), z.dtype), jnp.zeros((num_classes,), z.dtype))
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def body(carry, _):
    head, state = carry
    value, grad = value_and_grad(head, state=state)
    updates, state = opt.update(grad, state, head, value=value, grad=grad, value_fn=fun)
    return (optax.apply_updates(head, updates), state), None
  (head, _), _ = jax.lax.scan(body, (head, opt.init(head)), None, length=steps)
  return head


def _fit_l1(z, labels, reg, *, num_classes: int, steps: int):
  """(kernel, bias) on standardized z: `steps` FISTA steps (Beck and Teboulle 2009) from zero on
  mean CE + reg * ||kernel||_1, the bias not penalized. The step is 1 / L, L = ||[z, 1]||_2^2 /
  (2 n) bounding the CE's curvature (Bohning: its Hessian is at most 1/2 (x x^T) per example),
  so the objective falls monotonically up to the momentum's overshoot."""
  n = z.shape[0]
  design = jnp.concatenate([z, jnp.ones((n, 1), z.dtype)], axis=1)
  step = 1.0 / (0.5 * jnp.square(jnp.linalg.norm(design, ord=2)) / n)
  grad = jax.grad(lambda head: losses.cross_entropy(logits=z @ head[0] + head[1], labels=labels))

  def prox_step(head):
    g = grad(head)
    return (soft_threshold(head[0] - step * g[0], step * reg), head[1] - step * g[1])

  def body(carry, _):
    head, prev, t = carry
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    momentum = (t - 1.0) / t_next
    y = jax.tree_util.tree_map(lambda a, b: a + momentum * (a - b), head, prev)
    return (prox_step(y), head, t_next), None
  head = (jnp.zeros((z.shape[1], num_classes), z.dtype), jnp.zeros((num_classes,), z.dtype))
  (head, _, _), _ = jax.lax.scan(body, (head, head, jnp.ones((), z.dtype)), None, length=steps)
  return head


def fit_head(x, labels, reg, *, num_classes: int, steps: int, penalty: str = "l2"):
  """(kernel [D, C], bias [C]) on the raw features x [n, D]: fit from zero on the features
  standardized on x itself, penalty 'l2' (_fit_l2) or 'l1' (_fit_l1), the standardization folded
  back into the result."""
  mean, std = standardizer(x)
  z = (x - mean) / std
  fit = _fit_l1 if penalty == "l1" else _fit_l2
  kernel, bias = fit(z, labels, reg, num_classes=num_classes, steps=steps)
  return kernel / std[:, None], bias - (mean / std) @ kernel


def fit_map_mode() -> str:
  return FIT_MAP or ("map" if jax.default_backend() == "cpu" else "vmap")


def fit_heads(x_SnD, labels_Sn, reg_grid, *, num_classes: int, steps: int,
              penalty: str = "l2") -> tuple:
  """(kernel [R*S, D, C], bias [R*S, C]): row g * S + s fits set s's features x_SnD[s] at
  reg_grid[g], all in one program."""
  x_SnD, labels_Sn = jnp.asarray(x_SnD, jnp.float32), jnp.asarray(labels_Sn, jnp.int32)
  s = x_SnD.shape[0]
  regs = jnp.repeat(jnp.asarray(reg_grid, jnp.float32), s)
  seeds = jnp.tile(jnp.arange(s), len(reg_grid))
  return _fit_all(x_SnD, labels_Sn, seeds, regs, num_classes=num_classes, steps=steps,
                  mode=fit_map_mode(), penalty=penalty)


def fit_averaged(x_SJnD, labels_SJn, reg_grid, *, num_classes: int, steps: int,
                 penalty: str = "l2") -> tuple:
  """(kernel [R*S, D, C], bias [R*S, C]): row g * S + s the mean of the heads fit at
  reg_grid[g] on each of seed s's J subsets x_SJnD[s, j] (on raw features, each fit
  standardized on its own subset), as DFR averages its retrains' coefficients."""
  x_SJnD = np.asarray(x_SJnD)
  s, j = x_SJnD.shape[:2]
  kernel, bias = fit_heads(x_SJnD.reshape(s * j, *x_SJnD.shape[2:]),
                           np.asarray(labels_SJn).reshape(s * j, -1), reg_grid,
                           num_classes=num_classes, steps=steps, penalty=penalty)
  mean = lambda a: jnp.mean(a.reshape(len(reg_grid), s, j, *a.shape[1:]), axis=2).reshape(
      len(reg_grid) * s, *a.shape[1:])
  return mean(kernel), mean(bias)


def _fit_one(x_SnD, labels_Sn, seed, reg, *, num_classes, steps, penalty):
  return fit_head(x_SnD[seed], labels_Sn[seed], reg, num_classes=num_classes, steps=steps,
                  penalty=penalty)


def _fit_all_impl(x_SnD, labels_Sn, seeds, regs, *, num_classes, steps, mode, penalty):
  one = lambda seed, reg: _fit_one(x_SnD, labels_Sn, seed, reg, num_classes=num_classes,
                                   steps=steps, penalty=penalty)
  if mode == "vmap":
    return jax.vmap(one)(seeds, regs)
  return jax.lax.map(lambda a: one(*a), (seeds, regs))


_fit_all = jax.jit(_fit_all_impl, static_argnames=("num_classes", "steps", "mode", "penalty"))


# ---------------------------------------------------------------- the workdir

def dfr_config(base_config, base_workdir, *, reg_grid, steps, split, per_group, base_lam,
               penalty, num_subsets):
  """The DFR workdir's config: the base run's, lambda grid = reg_grid, and `dfr`."""
  c = ml_collections.ConfigDict(base_config.to_dict())
  c.loss.lam_grid = tuple(float(r) for r in reg_grid)
  c.loss.lam = float(reg_grid[0])
  c.dfr = ml_collections.ConfigDict(dict(
      base=str(pathlib.Path(base_workdir).resolve()), base_lam=float(base_lam),
      reg_grid=tuple(float(r) for r in reg_grid), steps=int(steps), split=split,
      per_group=int(per_group or 0), standardize=True, penalty=penalty,
      num_subsets=int(num_subsets)))
  c.lock()
  return c


def _check_args(reg_grid, steps, split, per_group, base_workdir, workdir, penalty, num_subsets):
  if not reg_grid or any(not float(r) >= 0 for r in reg_grid):
    raise ValueError(f"DFR's reg_grid must be a non-empty list of regularization strengths "
                     f">= 0; got {reg_grid!r}.")
  if penalty not in PENALTIES:
    raise ValueError(f"DFR's penalty must be one of {PENALTIES}; got {penalty!r}.")
  if steps is not None and int(steps) < 1:
    raise ValueError(f"DFR needs steps >= 1 optimizer steps (or None: the default); got "
                     f"{steps}.")
  if int(num_subsets) < 1:
    raise ValueError(f"DFR's num_subsets (balanced subsets averaged) must be >= 1; got "
                     f"{num_subsets}.")
  if split not in splits_lib.SPLIT_NAMES or split == "train":
    raise ValueError(f"DFR fits on a held-out split, one of "
                     f"{[n for n in splits_lib.SPLIT_NAMES if n != 'train']}; got {split!r}.")
  if per_group is not None and int(per_group) < 1:
    raise ValueError(f"per_group must be >= 1 (or None: the smallest group's size); got "
                     f"{per_group}.")
  if pathlib.Path(base_workdir).resolve() == pathlib.Path(workdir).resolve():
    raise ValueError(f"DFR writes a new workdir beside the base run; {workdir} is the base "
                     "run's own, pass another.")


def balanced_rows(split: dict, seeds, per_group=None, num_subsets: int = 1) -> np.ndarray:
  """int [S * J, m]: row s * J + j the j-th of seed s's J = num_subsets group-balanced subsets
  of `split` (sorted rows), drawn from [seed, 4] (j = 0) and [seed, 4, j]."""
  rng = lambda seed, j: np.random.default_rng([int(seed), 4] + ([j] if j else []))
  return np.stack([groups.balanced_subset(split["labels"], split["aligned"], rng(seed, j),
                                          per_group)
                   for seed in seeds for j in range(num_subsets)])


def refit(base_workdir, workdir, *, reg_grid, steps: int | None = None,
          split: str = DEFAULT_SPLIT, per_group: int | None = None,
          base_lam: float | None = None, penalty: str = DEFAULT_PENALTY,
          num_subsets: int = DEFAULT_SUBSETS) -> dict:
  """Refits the head of every seed of the base run at every strength; returns results.json.

  base_lam: the base grid point whose replicas are refit (default its headline lambda).
  per_group: examples of each group in a balanced subset (None: the smallest group's size).
  penalty: 'l1' (DFR's) or 'l2'; num_subsets: balanced subsets per seed, their heads averaged;
  steps: optimizer steps of each fit (None: DEFAULT_STEPS[penalty]).
  The module docstring describes the fit and the workdir it writes.
  """
  _check_args(reg_grid, steps, split, per_group, base_workdir, workdir, penalty, num_subsets)
  steps = DEFAULT_STEPS[penalty] if steps is None else int(steps)
  base_config = runs.load_config(base_workdir)
  if split.startswith("val") and not splits_lib.field(base_config.data, f"{split}_size"):
    raise ValueError(f"The base run's data has no {split!r} split; train the base with "
                     f"config.data.{split}_size > 0 (or refit on another held-out split).")
  base_lam = runs.headline_lam(base_config) if base_lam is None else float(base_lam)
  idx = [runs.replica_of(base_config, base_lam, s) for s in range(base_config.num_seeds)]
  config = dfr_config(base_config, base_workdir, reg_grid=reg_grid, steps=steps, split=split,
                      per_group=per_group, base_lam=base_lam, penalty=penalty,
                      num_subsets=num_subsets)
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
  n_sub = d.num_subsets
  rows = balanced_rows(held, seeds, d.per_group or None, n_sub)  # [S * J, m], seed-major.
  path = head_path(model, jax.tree_util.tree_map(lambda x: x[0], params_S),
                   splits_lib.image_shape(held))
  num_classes = get_path(params_S, path)["kernel"].shape[-1]
  features = jax.jit(lambda p, x: head_features(model, p, x))
  bs = config.train.eval_batch_size
  param = lambda s: jax.tree_util.tree_map(lambda x: x[s], params_S)

  t0 = time.perf_counter()
  x_SJnD = np.stack([batches.map_batches(lambda x, s=i // n_sub: features(param(s),
                                                                         jnp.asarray(x)),
                                         (held["images"][r],), batch_size=bs)
                     for i, r in enumerate(rows)])
  x_SJnD = x_SJnD.reshape(len(seeds), n_sub, *x_SJnD.shape[1:])
  labels_SJn = np.asarray(held["labels"])[rows].reshape(len(seeds), n_sub, -1)
  kernel, bias = jax.device_get(fit_averaged(x_SJnD, labels_SJn, d.reg_grid,
                                             num_classes=num_classes, steps=d.steps,
                                             penalty=d.penalty))
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
                    "subset_size": int(rows.shape[1]), "num_heads": k, "penalty": d.penalty,
                    "num_subsets": n_sub}
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
