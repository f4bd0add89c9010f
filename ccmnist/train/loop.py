"""train_and_evaluate(config, workdir): K replicas (seeds x lambda grid) in one program.

Replica r = (grid point g, seed s) with r = g * num_seeds + s. Its init and data order come
from jax.random.key(config.seed + s), so replica r equals a single run with seed config.seed + s
and lambda grid[g]; grid points share seeds, which makes lambda comparisons paired.
"""

import functools
import json
import os
import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ccmnist import models
from ccmnist.data import splits as splits_lib
from ccmnist.train import losses
from ccmnist.train import optim
from ccmnist.train import parallel
from ccmnist.train import step as step_lib

EVAL_SPLITS = ("train", "test_easy", "test_hard", "val", "val_unbiased")


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class WorkdirConfigError(ValueError):
  """The workdir holds a run of a different config."""


# ---------------------------------------------------------------- config and workdir

def lam_grid(config) -> tuple:
  """The lambda of each grid point: config.loss.lam_grid, or (config.loss.lam,)."""
  return tuple(float(x) for x in (config.loss.lam_grid or (config.loss.lam,)))


def replicas(config) -> list:
  """[{'replica', 'seed', 'lam'}] for every replica of a run."""
  if config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be >= 1; got {config.num_seeds}.")
  return [{"replica": g * config.num_seeds + s, "seed": config.seed + s, "lam": lam}
          for g, lam in enumerate(lam_grid(config)) for s in range(config.num_seeds)]


def check_config(config) -> None:
  """Fails at once, with what to fix, on bad values."""
  losses.check_loss_name(config.loss.name)
  models.get_model(config.model.name, conv_impl=config.model.conv_impl)
  splits_lib.check_data_config(config.data)
  if config.optim.name not in optim.OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {config.optim.name!r}; use one of {optim.OPTIMIZERS}.")
  if config.train.epochs < 1 or config.train.batch_size < 1:
    raise ValueError("config.train.epochs and config.train.batch_size must be >= 1.")
  if config.train.batch_size > config.data.train_size:
    raise ValueError(f"batch_size {config.train.batch_size} > train_size "
                     f"{config.data.train_size}; lower config.train.batch_size.")
  if any(lam < 0 for lam in lam_grid(config)):
    raise ValueError(f"loss weights must be >= 0; got {lam_grid(config)}.")
  if config.loss.warmup_epochs < 0:
    raise ValueError("config.loss.warmup_epochs must be >= 0.")
  if config.loss.grad_scale not in losses.GRAD_SCALES:
    raise ValueError(f"config.loss.grad_scale must be one of {tuple(losses.GRAD_SCALES)}.")
  if config.train.get("data_parallel", False):
    parallel.check_batch_size(config.train.batch_size, jax.device_count())
  replicas(config)


def config_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def atomic_write_text(path, text: str) -> None:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def _diff(a: dict, b: dict, prefix="") -> list:
  out = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
    if isinstance(va, dict) and isinstance(vb, dict):
      out += _diff(va, vb, f"{prefix}{k}.")
    elif va != vb:
      out.append(f"{prefix}{k}: {va!r} (workdir) vs {vb!r} (now)")
  return out


def claim_workdir(config, workdir, *, ignore: tuple = ()) -> pathlib.Path:
  """Writes config.json, or checks that the one there is the same config.

  ignore: top-level keys that select what to run rather than what is computed (the study's
  `only`): they may differ between runs on one workdir.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / "config.json"
  text = config_json(config)
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise WorkdirConfigError(f"{path} is not valid JSON ({e}); use a new --workdir.") from e
    diff = _diff({k: v for k, v in old.items() if k not in ignore},
                 {k: v for k, v in json.loads(text).items() if k not in ignore})
    if diff:
      raise WorkdirConfigError(
          f"{workdir} holds a run of a different config:\n  " + "\n  ".join(diff[:20]) +
          "\nUse a new --workdir, or rerun with the same config to resume.")
  else:
    atomic_write_text(path, text)
  return workdir


# ---------------------------------------------------------------- data on device

def device_splits(splits: dict, eval_batch_size: int):
  """Train arrays on device, and each eval split padded to whole eval batches."""
  tr = splits["train"]
  train = {"images": jnp.asarray(tr["images"]), "labels": jnp.asarray(tr["labels"]),
           "cf_images": jnp.asarray(tr["cf_images"])}
  evals = {}
  for name in EVAL_SPLITS:
    if name not in splits:
      continue
    n = len(splits[name]["labels"])
    pad = (-n) % eval_batch_size
    evals[name] = {
        "images": jnp.asarray(np.pad(splits[name]["images"], ((0, pad), (0, 0), (0, 0), (0, 0)))),
        "labels": jnp.asarray(np.pad(splits[name]["labels"], (0, pad))),
        "mask": jnp.asarray(np.arange(n + pad) < n), "n": n}
  return train, evals


def predict(eval_fn, params, split, eval_batch_size):
  """Predictions [K, n] and accuracies [K] of stacked params on one padded split."""
  preds, correct = [], 0
  for i in range(0, split["images"].shape[0], eval_batch_size):
    sl = slice(i, i + eval_batch_size)
    p, c = eval_fn(params, split["images"][sl], split["labels"][sl], split["mask"][sl])
    preds.append(p)
    correct = correct + c
  preds = jnp.concatenate(preds, axis=1)[:, :split["n"]]
  return preds, correct / split["n"]


def evaluate_all(eval_fn, params, evals, eval_batch_size) -> tuple:
  """({split: [K] accuracies} as host floats, {split: [K, n] predictions} left on device)."""
  out = {name: predict(eval_fn, params, s, eval_batch_size) for name, s in evals.items()}
  accs = jax.device_get({name: acc for name, (_, acc) in out.items()})
  return ({name: np.asarray(a).tolist() for name, a in accs.items()},
          {name: preds for name, (preds, _) in out.items()})


def save_predictions(workdir, preds: dict) -> None:
  """DIR/predictions.npz: the final params' predictions per split, [K, n] (for evaluate_run)."""
  tmp = pathlib.Path(workdir) / "predictions.tmp.npz"
  np.savez(tmp, **{name: np.asarray(p, np.int8) for name, p in jax.device_get(preds).items()})
  os.replace(tmp, pathlib.Path(workdir) / "predictions.npz")


def load_predictions(workdir) -> dict:
  """{split: int8 [K, n]} written after the last epoch, or {} when the run has none."""
  path = pathlib.Path(workdir) / "predictions.npz"
  if not path.exists():
    return {}
  with np.load(path) as f:
    return {name: f[name] for name in f.files}


# ---------------------------------------------------------------- state

def replica_keys(config):
  seeds = [r["seed"] for r in replicas(config)]
  return jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])


def init_state(config, model, tx):
  """Replica-stacked TrainState: replica r initialized from key(seed_r).

  Replicas are initialized one by one with the model's cached, jitted init (the same values a
  vmapped init gives): a vmapped init is a new program per config and took 8-25 s to compile
  on XLA:CPU, most of it in the random draws.
  """
  keys = [jax.random.fold_in(jax.random.key(r["seed"]), 0) for r in replicas(config)]
  params = [models.init_params(model, k) for k in keys]
  params = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *params)
  create = lambda p: step_lib.TrainState.create(apply_fn=None, params=p, tx=tx)
  return jax.jit(jax.vmap(create))(params)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _orders(key_data_K, epoch, n: int, steps: int, batch: int):
  def one(key_data):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 1), epoch)
    return jax.random.permutation(key, n)[:steps * batch].reshape(steps, batch)
  return jax.vmap(one)(key_data_K)


def epoch_orders(config, epoch: int, n: int, steps: int):
  """[K, steps, batch] example indices of one epoch; replica r's from key(seed_r)."""
  return _orders(replica_keys(config), jnp.int32(epoch), n, steps, config.train.batch_size)


def checkpoint_manager(workdir) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def build(config):
  """(model, tx, steps_per_epoch) of a config."""
  model = models.get_model(config.model.name, conv_impl=config.model.conv_impl)
  steps = config.data.train_size // config.train.batch_size
  tx = optim.make_optimizer(config.optim, steps * config.train.epochs)
  return model, tx, steps


# ---------------------------------------------------------------- the loop

def _check_finite(losses_KS: np.ndarray, first_step: int):
  bad = ~np.isfinite(losses_KS)
  if bad.any():
    r, s = np.argwhere(bad)[0]
    raise NonFiniteLossError(
        f"Loss became {losses_KS[r, s]} at step {first_step + s} (replica {r}); lower "
        "config.optim.lr or the loss weight config.loss.lam.")


def _read_metrics(path: pathlib.Path, upto_epoch: int) -> list:
  if not path.exists():
    return []
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return [r for r in rows if r["epoch"] <= upto_epoch]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> dict:
  """Trains every replica of `config`, evaluating each epoch; returns results.json's dict.

  Resumes from the last checkpoint in workdir; a finished run returns its results at once.
  """
  check_config(config)
  workdir = claim_workdir(config, workdir)
  results_path = workdir / "results.json"
  if results_path.exists():
    return json.loads(results_path.read_text())

  t_data = time.perf_counter()
  splits = splits_lib.get_splits(config.data)
  train_data, evals = device_splits(splits, config.train.eval_batch_size)
  logging.info("Data ready in %.1fs: %s", time.perf_counter() - t_data,
               {k: len(v["labels"]) for k, v in splits.items()})

  model, tx, steps = build(config)
  reps = replicas(config)
  lams = jnp.asarray([r["lam"] for r in reps], jnp.float32)
  warmup_steps = config.loss.warmup_epochs * steps if config.loss.name == "consistency" else 0
  step_kw = dict(model=model, loss_name=config.loss.name, warmup_steps=warmup_steps,
                 steps_per_epoch=steps, grad_scale=config.loss.grad_scale)
  train_fn = step_lib.make_train_step(**step_kw)
  eval_fn = step_lib.make_eval_step(model=model)

  state = init_state(config, model, tx)
  place_orders = lambda orders: orders
  data_parallel = config.train.get("data_parallel", False)
  if data_parallel:  # The batch split over every device.
    train_fn, state, train_data, lams, place_orders = parallel.setup(
        config, state, train_data, lams, **step_kw)
  mngr = checkpoint_manager(workdir)
  start_epoch = 0
  if mngr.latest_step() is not None:
    start_epoch = mngr.latest_step()
    state = mngr.restore(start_epoch, args=ocp.args.StandardRestore(state))
    logging.info("Resumed from the checkpoint after epoch %d.", start_epoch)
  metrics_path = workdir / "metrics.jsonl"
  history = _read_metrics(metrics_path, start_epoch)
  atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))

  n_train, k = config.data.train_size, len(reps)
  total_steps = steps * config.train.epochs
  log_every = max(1, config.train.log_every_steps)
  t_run, done_since_start = time.perf_counter(), 0
  for epoch in range(start_epoch + 1, config.train.epochs + 1):
    orders = place_orders(epoch_orders(config, epoch, n_train, steps))
    t_epoch, step_metrics = time.perf_counter(), []
    for s in range(steps):
      state, m = train_fn(state, train_data, orders, lams)
      step_metrics.append(m)
      done_since_start += 1
      if data_parallel:
        parallel.limit_in_flight(step_metrics)
      if (s + 1) % log_every == 0 or s + 1 == steps:
        jax.block_until_ready(m["loss"])  # On one device the only sync: on logging steps.
        elapsed = time.perf_counter() - t_run
        rate = done_since_start * config.train.batch_size * k / elapsed
        left = total_steps - ((epoch - 1) * steps + s + 1)
        logging.info("epoch %d/%d step %d/%d  loss %.4f  %.0f img/s  ETA %.0fs",
                     epoch, config.train.epochs, s + 1, steps, float(np.mean(m["loss"])), rate,
                     left * config.train.batch_size * k / max(rate, 1e-9))
    stacked = jax.device_get(jax.tree_util.tree_map(lambda *x: jnp.stack(x, 1), *step_metrics))
    _check_finite(stacked["loss"], (epoch - 1) * steps + 1)
    train_time = time.perf_counter() - t_epoch
    last = epoch == config.train.epochs
    # The train split costs as much as both test sets: by default only after the last epoch.
    every = config.train.get("eval_train_every_epoch", True)
    accuracy, preds = evaluate_all(
        eval_fn, state.params, {n: v for n, v in evals.items() if n != "train" or last or every},
        config.train.eval_batch_size)
    if last:
      save_predictions(workdir, preds)
    row = {"epoch": epoch, "step": epoch * steps,
           **{f"train_{name}": np.mean(v, axis=1).tolist() for name, v in stacked.items()},
           "accuracy": accuracy, "epoch_time_s": train_time,
           "train_img_per_s": steps * config.train.batch_size * k / train_time}
    history.append(row)
    mngr.save(epoch, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()
    with metrics_path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    logging.info("epoch %d: %s", epoch, {n: np.round(v, 4).tolist() for n, v in accuracy.items()})

  results = summarize(config, history)
  atomic_write_text(results_path, json.dumps(results, indent=2))
  return results


def _mean_std(values) -> dict:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
          else 0.0, "values": values.tolist()}


def summarize(config, history: list) -> dict:
  """results.json: accuracy of grid point 0 (mean over seeds), per-grid-point mean/std."""
  final = history[-1]["accuracy"]
  reps = replicas(config)
  grid = []
  for g, lam in enumerate(lam_grid(config)):
    idx = [r["replica"] for r in reps if r["lam"] == lam and r["replica"] // config.num_seeds == g]
    grid.append({"lam": lam, "accuracy": {n: _mean_std([v[i] for i in idx])
                                          for n, v in final.items()}})
  return {
      "accuracy": {n: s["mean"] for n, s in grid[0]["accuracy"].items()},
      "accuracy_std": {n: s["std"] for n, s in grid[0]["accuracy"].items()},
      "grid": grid,
      "replicas": [{**r, "accuracy": {n: v[r["replica"]] for n, v in final.items()}}
                   for r in reps],
      "epochs": len(history),
      "train_time_s": float(sum(h["epoch_time_s"] for h in history)),
  }


# ---------------------------------------------------------------- loading a run

def load_config(workdir) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir.")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_run(workdir, *, replica: int | None = 0):
  """(model, params, config) of the latest checkpoint in a training workdir.

  params are replica `replica`'s (default the first); replica=None gives the stacked [K, ...]
  params of every replica (see `replicas(config)` for their seeds and lambdas).
  """
  config = load_config(workdir)
  model, tx, _ = build(config)
  mngr = checkpoint_manager(workdir)
  if mngr.latest_step() is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints: the run has not finished "
                            "an epoch yet.")
  abstract = jax.eval_shape(lambda: init_state(config, model, tx))
  state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract))
  params = state.params
  if replica is not None:
    if not 0 <= replica < len(replicas(config)):
      raise ValueError(f"replica {replica} out of range: the run has {len(replicas(config))}.")
    params = jax.tree_util.tree_map(lambda x: x[replica], params)
  return model, params, config
