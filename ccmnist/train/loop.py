"""train_and_evaluate(config, workdir): K replicas (seeds x lambda grid) in one program.

What the workdir holds and how replicas map to seeds and lambdas: train/runs.py.
"""

import contextlib
import functools
import json
import pathlib
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ccmnist.data import splits as splits_lib
from ccmnist.train import methods
from ccmnist.train import parallel
from ccmnist.train import reference
from ccmnist.train import runs
from ccmnist.train import step as step_lib
from ccmnist.train import summaries
from ccmnist.util import batches
from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


# ---------------------------------------------------------------- data on device

def device_splits(splits: dict, eval_batch_size: int, *, with_train: bool = True,
                  train_keys=("images", "labels", "cf_images")):
  """The train arrays `train_keys` on device (None unless with_train), and each eval split
  padded to whole eval batches."""
  tr, train = splits["train"], None
  if with_train:
    train = {k: jnp.asarray(tr[k]) for k in train_keys if k != "index"}
  evals = {}
  for name in splits_lib.SPLIT_NAMES:
    if name not in splits:
      continue
    n = len(splits[name]["labels"])
    size = n + (-n) % eval_batch_size
    evals[name] = {
        "images": jnp.asarray(batches.pad_rows(splits[name]["images"], size)),
        "labels": jnp.asarray(batches.pad_rows(splits[name]["labels"], size)),
        "mask": jnp.asarray(np.arange(size) < n), "n": n}
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


# ---------------------------------------------------------------- data order

def replica_keys(config):
  seeds = [r["seed"] for r in runs.replicas(config)]
  return jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _orders(key_data_K, epoch, n: int, steps: int, batch: int, weights=None):
  def one(key_data):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 1), epoch)
    if weights is None:
      return jax.random.permutation(key, n)[:steps * batch].reshape(steps, batch)
    return jax.random.choice(key, n, (steps, batch), replace=True, p=weights)
  return jax.vmap(one)(key_data_K)


def _pass_order(key_data, p, size, width: int):
  """[width] pass p's order through a pool of `size` real entries padded to `width`: a random
  permutation of 0..size-1 (uniform keys, +inf on the padding, argsorted), then the padding.
  Entry i's key is drawn from fold_in(key, i), so the order does not depend on the padding's
  width: a replica's stream is the same in a run of one replica as beside larger pools."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 2), p)
  i = jnp.arange(width)
  u = jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(key, j)))(i)
  return jnp.argsort(jnp.where(i < size, u, jnp.inf))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _pool_orders(key_data_K, epoch, steps: int, batch: int, passes: int, pool_KM, sizes_K):
  def one(key_data, pool, size):
    first = (epoch - 1) * (steps * batch)  # The epoch's first item in the replica's stream.
    t = first + jnp.arange(steps * batch)
    p0 = first // size
    orders = jax.vmap(lambda j: _pass_order(key_data, p0 + j, size, pool.shape[0]))(
        jnp.arange(passes))
    return pool[orders[t // size - p0, t % size]].reshape(steps, batch)
  return jax.vmap(one)(key_data_K, pool_KM, sizes_K)


def epoch_orders(config, epoch: int, n: int, steps: int, weights=None, pool=None):
  """[K, steps, batch] example indices of one epoch; replica r's from key(seed_r).

  weights: None (every example once, in a random order), or [n] probabilities: examples drawn
  with replacement (a method's sample_weights).
  pool: None, or a method's epoch_pool (pool [K, M], sizes [K]): replica r streams through
  successive random permutations of pool[r, :sizes[r]], pass p's from key(seed_r) and p alone;
  epoch e takes the stream's items (e - 1) * steps * batch onward, crossing passes as needed.
  """
  if pool is not None:
    if weights is not None:
      raise ValueError("A method gives either sample_weights or an epoch_pool, not both.")
    pool_KM, sizes = (np.asarray(a) for a in pool)
    # An epoch's items span at most this many passes of the smallest pool.
    passes = steps * config.train.batch_size // int(sizes.min()) + 2
    return _pool_orders(replica_keys(config), jnp.int32(epoch), steps, config.train.batch_size,
                        passes, jnp.asarray(pool_KM, jnp.int32), jnp.asarray(sizes, jnp.int32))
  weights = None if weights is None else jnp.asarray(weights, jnp.float32)
  return _orders(replica_keys(config), jnp.int32(epoch), n, steps, config.train.batch_size,
                 weights)


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


def _claim(config, workdir) -> pathlib.Path:
  """claim_workdir, process 0 first: it writes (or checks) config.json and holds the workdir;
  the other processes check config.json once process 0 has written it."""
  if jax.process_count() == 1:
    return workdir_lib.claim_workdir(config, workdir)
  error = None
  if parallel.is_writer():
    try:
      workdir_lib.claim_workdir(config, workdir, writer=True)
    except Exception as e:  # pylint: disable=broad-except  # Re-raised below, once all know.
      error = e
  # A barrier that also tells every process whether process 0 succeeded, so none waits forever.
  ok = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
  if error is not None:
    raise error
  if not ok:
    raise parallel.PeerError(f"Process 0 could not claim {workdir}; its log says why.")
  return workdir_lib.claim_workdir(config, workdir, writer=False)


def _training_step(config, state, train_split, train_data, lams, step_kw) -> tuple:
  """(step_fn, state, place_orders, local): step_fn(state, orders, s) -> (state, metrics) runs
  step s of an epoch whose orders place_orders(epoch_orders(...)) made; local(tree) gives the
  host-readable copy of the step's outputs."""
  if jax.process_count() > 1:  # Each process feeds its devices' share of every batch.
    step_fn, state = parallel.setup_processes(config, state, train_split, lams, **step_kw)
    return step_fn, state, np.asarray, parallel.local_copy
  train_fn, place_orders = step_lib.make_train_step(**step_kw), (lambda orders: orders)
  if config.train.data_parallel:  # The batch split over every device.
    train_fn, state, train_data, lams, place_orders = parallel.setup(
        config, state, train_data, lams, **step_kw)
  step_fn = lambda state, orders, s: train_fn(state, train_data, orders, lams)
  return step_fn, state, place_orders, lambda tree: tree


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> dict:
  """Trains every replica of `config`, evaluating each epoch; returns results.json's dict.

  Resumes from the last checkpoint in workdir that restores; a finished run returns its results
  at once. Several processes (jax.distributed) train one run together, each feeding its share
  of every batch; only process 0 writes files other than checkpoints (docs/multihost.md).
  """
  runs.check_config(config)
  workdir = _claim(config, workdir)
  try:
    return _train_and_evaluate(config, workdir)
  finally:
    if parallel.is_writer():
      workdir_lib.release_workdir(workdir)


def write_inferred_split(config, workdir, train_split, extra) -> bool:
  """Writes workdir/inferred_split.json when the run's method singles out train examples
  without being told of the bias (methods.Method.inferred_split); returns whether it did."""
  key = methods.get(config.loss.name).inferred_split
  if not key:
    return False
  io.write_json(pathlib.Path(workdir) / runs.INFERRED_SPLIT_FILE,
                methods.base.split_against_bias(extra[key], train_split["aligned"]))
  return True


def inferred_split_of_finished(workdir) -> bool:
  """write_inferred_split for a finished run that has none (trained before runs wrote it),
  from its config and its reference run, which must still hold its checkpoints."""
  workdir = pathlib.Path(workdir)
  if (workdir / runs.INFERRED_SPLIT_FILE).exists() or not (workdir / "results.json").exists():
    return False
  config = runs.load_config(workdir)
  if not methods.get(config.loss.name).inferred_split:
    return False
  train_split = splits_lib.get_splits(config.data)["train"]
  return write_inferred_split(config, workdir, train_split,
                              reference.init_extra(config, train_split))


def _train_and_evaluate(config, workdir: pathlib.Path) -> dict:
  results_path = workdir / "results.json"
  if parallel.same_on_all_processes(results_path.exists(), "whether the run has finished"):
    return json.loads(results_path.read_text())
  writer, multiprocess = parallel.is_writer(), jax.process_count() > 1

  t_data = time.perf_counter()
  splits = splits_lib.get_splits(config.data)
  model, tx, steps = runs.build(config)
  step_kw = runs.step_kwargs(config, model, steps)
  method = step_kw["method"]
  train_data, evals = device_splits(splits, config.train.eval_batch_size,
                                    with_train=not multiprocess, train_keys=method.batch_keys)
  extra = reference.init_extra(config, splits["train"])  # A reference run loaded first.
  weights = (None if method.sample_weights is None else
             method.sample_weights(config, splits["train"]))
  pool = (None if method.epoch_pool is None else
          method.epoch_pool(config, splits["train"], extra, runs.replicas(config)))
  logging.info("Data ready in %.1fs: %s", time.perf_counter() - t_data,
               {k: len(v["labels"]) for k, v in splits.items()})
  if writer:
    write_inferred_split(config, workdir, splits["train"], extra)

  reps = runs.replicas(config)
  lams = jnp.asarray([r["lam"] for r in reps], jnp.float32)
  eval_fn = step_lib.make_eval_step(model=model)

  step_fn, state, place_orders, local = _training_step(
      config, runs.init_state(config, model, tx, extra), splits["train"], train_data, lams,
      step_kw)
  eval_every = runs.eval_every_epochs(config)
  mngr = runs.checkpoint_manager(workdir, keep_every=eval_every)  # Where a run may be stopped.
  start_epoch, state, bad = runs.restore_latest(mngr, state)
  for step in bad:  # Unreadable, and about to be written again.
    logging.warning("Deleting unreadable checkpoint %s.", mngr.directory / str(step))
    mngr.delete(step)
  start_epoch = start_epoch or 0
  if start_epoch:
    logging.info("Resumed from the checkpoint after epoch %d.", start_epoch)
  metrics_path = workdir / "metrics.jsonl"
  history = _read_metrics(metrics_path, start_epoch)
  if writer:
    io.write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))

  n_train, k = config.data.train_size, len(reps)
  total_steps = steps * config.train.epochs
  log_every = max(1, config.train.log_every_steps)
  bound_queue = config.train.data_parallel
  t_run, done_since_start = time.perf_counter(), 0
  tensorboard = summaries.writers(workdir, k) if writer else contextlib.nullcontext([])
  with tensorboard as tb:
    for epoch in range(start_epoch + 1, config.train.epochs + 1):
      orders = place_orders(epoch_orders(config, epoch, n_train, steps, weights, pool))
      t_epoch, step_metrics = time.perf_counter(), []
      for s in range(steps):
        state, m = step_fn(state, orders, s)
        step_metrics.append(m)
        done_since_start += 1
        if bound_queue:
          parallel.limit_in_flight(step_metrics)
        if (s + 1) % log_every == 0 or s + 1 == steps:
          jax.block_until_ready(m["loss"])  # On one device the only sync: on logging steps.
          elapsed = time.perf_counter() - t_run
          rate = done_since_start * config.train.batch_size * k / elapsed
          left = total_steps - ((epoch - 1) * steps + s + 1)
          logging.info("epoch %d/%d step %d/%d  loss %.4f  %.0f img/s  ETA %.0fs",
                       epoch, config.train.epochs, s + 1, steps, float(np.mean(local(m)["loss"])),
                       rate, left * config.train.batch_size * k / max(rate, 1e-9))
      stacked = jax.device_get(
          jax.tree_util.tree_map(lambda *x: jnp.stack(x, 1), *local(step_metrics)))
      _check_finite(stacked["loss"], (epoch - 1) * steps + 1)
      train_time = time.perf_counter() - t_epoch
      last = epoch == config.train.epochs
      # The train split costs as much as both test sets: by default only after the last epoch.
      # Several processes: each evaluates on its own device, with its copy of the params.
      every = config.train.eval_train_every_epoch
      accuracy, preds = {}, None
      if last or epoch % eval_every == 0:  # Nothing reads an epoch's accuracy but its curve.
        accuracy, preds = evaluate_all(
            eval_fn, local(state.params),
            {n: v for n, v in evals.items() if n != "train" or last or every},
            config.train.eval_batch_size)
      if preds is not None and writer:
        runs.save_predictions(workdir, preds, epoch=epoch)
      if last and writer:
        runs.save_predictions(workdir, preds)
      row = {"epoch": epoch, "step": epoch * steps,
             **{f"train_{name}": np.mean(v, axis=1).tolist() for name, v in stacked.items()},
             "accuracy": accuracy, "epoch_time_s": train_time,
             "train_img_per_s": steps * config.train.batch_size * k / train_time}
      history.append(row)
      mngr.save(epoch, args=ocp.args.StandardSave(state))  # Every process: orbax coordinates.
      mngr.wait_until_finished()
      if writer:
        with metrics_path.open("a") as f:
          f.write(json.dumps(row) + "\n")
      summaries.write_row(tb, row)
      if accuracy:
        logging.info("epoch %d: %s", epoch,
                     {n: np.round(v, 4).tolist() for n, v in accuracy.items()})
      else:
        logging.info("epoch %d: held-out splits next evaluated after epoch %d", epoch,
                     min(epoch - epoch % eval_every + eval_every, config.train.epochs))

  results = runs.summarize(config, history)
  if writer:
    io.write_json(results_path, results)
  return results
