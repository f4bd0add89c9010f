"""What a training workdir holds, and how to read it back.

A run trains K replicas (seeds x lambda grid) in one program. Replica r = (grid point g,
seed s) with r = g * num_seeds + s; its init and data order come from jax.random.key(config.seed
+ s), so replica r equals a single run with seed config.seed + s and lambda grid[g]; grid points
share seeds, which makes lambda comparisons paired.

  DIR/config.json       the run's config (util/workdir.py)
  DIR/checkpoints/      orbax, one per epoch (the last two kept)
  DIR/metrics.jsonl     one row per epoch
  DIR/predictions.npz   the final params' predictions per split, int8 [K, n]
  DIR/results.json      summarize(): final accuracies per replica and per grid point
"""

import pathlib

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
from ccmnist.util import io
from ccmnist.util import stats
from ccmnist.util import workdir as workdir_lib


# ---------------------------------------------------------------- replicas and config

def lam_grid(config) -> tuple:
  """The lambda of each grid point: config.loss.lam_grid, or (config.loss.lam,)."""
  return tuple(float(x) for x in (config.loss.lam_grid or (config.loss.lam,)))


def replicas(config) -> list:
  """[{'replica', 'seed', 'lam'}] for every replica of a run."""
  if config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be >= 1; got {config.num_seeds}.")
  return [{"replica": g * config.num_seeds + s, "seed": config.seed + s, "lam": lam}
          for g, lam in enumerate(lam_grid(config)) for s in range(config.num_seeds)]


def replica_of(config, lam: float, seed_index: int = 0) -> int:
  """The replica index of grid point `lam` and the seed_index-th seed."""
  grid = lam_grid(config)
  if lam not in grid:
    raise ValueError(f"lambda {lam} is not in the run's lambda grid {grid}.")
  return grid.index(lam) * config.num_seeds + seed_index


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
  if config.train.data_parallel:
    parallel.check_batch_size(config.train.batch_size, jax.device_count())
  replicas(config)


def build(config):
  """(model, tx, steps_per_epoch) of a config."""
  model = models.get_model(config.model.name, conv_impl=config.model.conv_impl)
  steps = config.data.train_size // config.train.batch_size
  tx = optim.make_optimizer(config.optim, steps * config.train.epochs)
  return model, tx, steps


def init_state(config, model, tx):
  """Replica-stacked TrainState: replica r initialized from key(seed_r).

  Replicas are initialized one by one with the model's cached, jitted init (the same values a
  vmapped init gives): a vmapped init is a new program per config, slow to compile on XLA:CPU
  because of its random draws.
  """
  keys = [jax.random.fold_in(jax.random.key(r["seed"]), 0) for r in replicas(config)]
  params = [models.init_params(model, k) for k in keys]
  params = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *params)
  create = lambda p: step_lib.TrainState.create(apply_fn=None, params=p, tx=tx)
  return jax.jit(jax.vmap(create))(params)


def checkpoint_manager(workdir) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


# ---------------------------------------------------------------- outputs

def save_predictions(workdir, preds: dict) -> None:
  """DIR/predictions.npz: the final params' predictions per split, [K, n]."""
  io.write_npz(pathlib.Path(workdir) / "predictions.npz",
               **{name: np.asarray(p, np.int8) for name, p in jax.device_get(preds).items()})


def load_predictions(workdir) -> dict:
  """{split: int8 [K, n]} written after the last epoch, or {} when the run has none."""
  path = pathlib.Path(workdir) / "predictions.npz"
  return io.read_npz(path) if path.exists() else {}


def summarize(config, history: list) -> dict:
  """results.json: accuracy of grid point 0 (mean over seeds), per-grid-point mean/std."""
  final = history[-1]["accuracy"]
  reps = replicas(config)

  def over_seeds(values):
    s = stats.mean_std(values)
    return {"mean": s["mean"], "std": s["std"], "values": [float(v) for v in values]}

  grid = []
  for g, lam in enumerate(lam_grid(config)):
    idx = [r["replica"] for r in reps if r["replica"] // config.num_seeds == g]
    grid.append({"lam": lam, "accuracy": {n: over_seeds([v[i] for i in idx])
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


# ---------------------------------------------------------------- reading a run back

def load_config(workdir) -> ml_collections.ConfigDict:
  return workdir_lib.load_config(workdir, kind="training")


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


def parse_runs(runs) -> dict:
  """{name: workdir or (workdir, replica)} from 'name=workdir,name=workdir', a dict or a
  ConfigDict (order kept)."""
  if isinstance(runs, (dict, ml_collections.ConfigDict)):
    out = dict(runs.items())
  else:
    out = {}
    for item in filter(None, (s.strip() for s in str(runs).split(","))):
      name, sep, workdir = (x.strip() for x in item.partition("="))
      if not sep or not name or not workdir:
        raise ValueError(f"Bad run {item!r} in config.runs; write name=workdir,name=workdir.")
      if name in out:
        raise ValueError(f"Run name {name!r} appears twice in config.runs.")
      out[name] = workdir
  if not out:
    raise ValueError("config.runs is empty; pass --config.runs=name=workdir,name=workdir.")
  return out
