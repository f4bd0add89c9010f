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

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ccmnist import models
from ccmnist.data import splits as splits_lib
from ccmnist.train import losses
from ccmnist.train import methods
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


def headline_lam(config) -> float:
  """The grid point a run's headline numbers stand for: config.loss.lam when the grid holds it
  (a method's own setting), else the grid's first point."""
  grid = lam_grid(config)
  return float(config.loss.lam) if config.loss.lam in grid else grid[0]


def check_config(config) -> None:
  """Fails at once, with what to fix, on bad values."""
  method = methods.get(config.loss.name)
  methods.settings_of(config)
  splits_lib.check_data_config(config.data)
  models.get_model(config.model.name, num_classes=splits_lib.spec(config.data).num_classes,
                   conv_impl=config.model.conv_impl)
  if config.optim.name not in optim.OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {config.optim.name!r}; use one of {optim.OPTIMIZERS}.")
  optim.make_schedule(config.optim, 1)  # A bad lr or schedule fails before anything is written.
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
  if config.train.data_parallel and not shardable(method):
    raise ValueError(f"Method {method.name!r} keeps per-replica state or reads rows by index, "
                     "which data-parallel training does not shard; set "
                     "config.train.data_parallel=False.")
  method.check(config)
  if config.train.data_parallel:
    parallel.check_batch_size(config.train.batch_size, jax.device_count())
  elif jax.process_count() > 1:
    raise ValueError(f"{jax.process_count()} processes train one run only data-parallel; set "
                     "config.train.data_parallel=True (or run a single process).")
  replicas(config)


def shardable(method) -> bool:
  """Whether data-parallel training computes `method` exactly: a mean over examples, no state,
  no rows by index."""
  return (method.sliceable and method.init_extra is methods.base.no_extra
          and "index" not in method.batch_keys)


def build(config):
  """(model, tx, steps_per_epoch) of a config: the method's model (methods.Method.wrap_model)."""
  model = models.get_model(config.model.name, num_classes=splits_lib.spec(config.data).num_classes,
                           conv_impl=config.model.conv_impl)
  wrap = methods.get(config.loss.name).wrap_model
  model = wrap(model) if wrap else model
  steps = config.data.train_size // config.train.batch_size
  tx = optim.make_optimizer(config.optim, steps * config.train.epochs)
  return model, tx, steps


def step_kwargs(config, model, steps_per_epoch: int) -> dict:
  """The static settings of a run's train step (step.make_train_step's keywords)."""
  return dict(model=model, method=methods.get(config.loss.name),
              settings=methods.settings_of(config), steps_per_epoch=steps_per_epoch,
              warmup_steps=config.loss.warmup_epochs * steps_per_epoch)


def init_extra(config, train_split) -> dict:
  """The method's state of every replica, [K, ...] on device (train_split: the host arrays)."""
  extra = methods.get(config.loss.name).init_extra(config, train_split, replicas(config))
  return jax.tree_util.tree_map(jnp.asarray, extra)


def init_state(config, model, tx, extra=None):
  """Replica-stacked TrainState: replica r initialized from key(seed_r); extra: the method's
  state [K, ...] (init_extra), {} when None.

  Replicas are initialized one by one with the model's cached, jitted init (the same values a
  vmapped init gives): a vmapped init is a new program per config, slow to compile on XLA:CPU
  because of its random draws.
  """
  keys = [jax.random.fold_in(jax.random.key(r["seed"]), 0) for r in replicas(config)]
  params = [models.init_params(model, k, splits_lib.spec(config.data).image_shape) for k in keys]
  params = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *params)
  create = lambda p, e: step_lib.TrainState.create(apply_fn=None, params=p, tx=tx, extra=e)
  return jax.jit(jax.vmap(create))(params, {} if extra is None else extra)


def checkpoint_manager(workdir) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


class CheckpointError(RuntimeError):
  """No checkpoint of a workdir restores."""


def _first_line(error: Exception) -> str:
  """The error's type and the start of its message, on one line."""
  text = str(error).strip().splitlines()
  line = (text[0] if text else "").split(" See full TensorStore details")[0]
  return f"{type(error).__name__}: {line[:160]}{'...' if len(line) > 160 else ''}"


def restore_latest(mngr: ocp.CheckpointManager, target) -> tuple:
  """(step, state, bad_steps): the newest checkpoint that restores into `target`'s structure.

  A checkpoint that does not restore (a truncated or corrupt file) is skipped with a warning
  and the one before it tried; bad_steps lists the skipped ones. (None, target, []) when there
  is no checkpoint; CheckpointError, naming the bad directory and how to recover, when there
  are some and none restores. Several processes: every one calls this, and they agree on the
  latest step and on each checkpoint's verdict (parallel.same_on_all_processes).
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  parallel.same_on_all_processes(steps[0] if steps else -1,
                                 f"the latest checkpoint in {mngr.directory}")
  bad, error = [], None
  for step in steps:
    try:
      state, error = mngr.restore(step, args=ocp.args.StandardRestore(target)), None
    except Exception as e:  # pylint: disable=broad-except  # TensorStore raises bare Exception.
      state, error = None, e
    parallel.same_on_all_processes(error is None, f"whether checkpoint {step} restores")
    if error is None:
      return step, state, bad
    logging.warning("Checkpoint %s does not restore (%s); trying the one before it.",
                    mngr.directory / str(step), _first_line(error))
    bad.append(step)
  if not bad:
    return None, target, []
  root = pathlib.Path(mngr.directory)
  where = root / str(bad[0]) if len(bad) == 1 else root
  what = (f"Checkpoint {where} does not restore" if len(bad) == 1 else
          f"No checkpoint in {where} restores")
  finished = root.parent / "results.json"
  also = f" and {finished}" if finished.exists() else ""  # Else a rerun would not retrain.
  raise CheckpointError(f"{what} ({_first_line(error)}); if its files are damaged, delete "
                        f"{where}{also} and rerun the training to restart that run.")


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
  """results.json: the headline accuracy at headline_lam (mean over seeds), and per grid
  point mean/std and per-seed values."""
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
  head = grid[lam_grid(config).index(headline_lam(config))]
  return {
      "headline_lam": head["lam"],
      "accuracy": {n: s["mean"] for n, s in head["accuracy"].items()},
      "accuracy_std": {n: s["std"] for n, s in head["accuracy"].items()},
      "grid": grid,
      "replicas": [{**r, "accuracy": {n: v[r["replica"]] for n, v in final.items()}}
                   for r in reps],
      "epochs": len(history),
      "train_time_s": float(sum(h["epoch_time_s"] for h in history)),
  }


# ---------------------------------------------------------------- reading a run back

def load_config(workdir) -> ml_collections.ConfigDict:
  return workdir_lib.load_config(workdir, kind="training")


def _saved_extra(mngr):
  """Zeros shaped like the method state of the newest checkpoint whose metadata reads ({} when
  none): what the state is made of without recomputing it (a method may derive it from a
  reference run)."""
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      path = pathlib.Path(mngr.directory) / str(step) / "default"
      tree = ocp.StandardCheckpointer().metadata(path).item_metadata.tree["extra"]
    except Exception:  # pylint: disable=broad-except  # A damaged one: restore_latest says so.
      continue
    return jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype), tree)
  return {}


def load_run(workdir, *, replica: int | None = 0):
  """(model, params, config) of the latest checkpoint that restores in a training workdir.

  params are replica `replica`'s (default the first); replica=None gives the stacked [K, ...]
  params of every replica (see `replicas(config)` for their seeds and lambdas).
  """
  config = load_config(workdir)
  model, tx, _ = build(config)
  # On this process's first device, whatever devices and processes wrote the checkpoint.
  here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  mngr = checkpoint_manager(workdir)
  try:
    extra = _saved_extra(mngr)
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here),
        jax.eval_shape(lambda: init_state(config, model, tx, extra)))
    step, state, _ = restore_latest(mngr, abstract)
  finally:
    mngr.close()
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints: the run has not finished "
                            "an epoch yet.")
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
