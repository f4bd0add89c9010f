"""What a training workdir holds, and how to read it back.

A run trains K replicas (seeds x a lambda or learning-rate grid) in one program
(train/replicas.py: which seed, lambda and learning rate each replica has).

  DIR/config.json       the run's config (util/workdir.py)
  DIR/checkpoints/      orbax, one per epoch (the last two kept)
  DIR/metrics.jsonl     one row per epoch; its accuracies every eval_every_epochs epochs and
                        after the last ({} between)
  DIR/predictions.npz   the final params' predictions per split, int8 [K, n]
  DIR/results.json      summarize(): final accuracies per replica and per grid point
  DIR/inferred_split.json   for a method that singles out train examples without being told of
                        the bias (JTT, EIIL: methods.Method.inferred_split), how its split lines
                        up with the bias (methods/base.py split_against_bias)
"""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ccmnist import models
from ccmnist.data import splits as splits_lib
from ccmnist.train import checkpoints
from ccmnist.train import losses
from ccmnist.train import methods
from ccmnist.train import optim
from ccmnist.train import parallel
from ccmnist.train import replicas as replicas_lib
from ccmnist.train import step as step_lib
from ccmnist.train import summaries
from ccmnist.util import io
from ccmnist.util import stats
from ccmnist.util import workdir as workdir_lib


# Where these live now; the names stay importable from here.
lam_grid = replicas_lib.lam_grid
replicas = replicas_lib.replicas
replica_of = replicas_lib.replica_of
headline_lam = replicas_lib.headline_lam
lr_grid = replicas_lib.lr_grid
grid_points = replicas_lib.grid_points
headline_index = replicas_lib.headline_index
checkpoint_manager = checkpoints.checkpoint_manager
CheckpointError = checkpoints.CheckpointError
restore_latest = checkpoints.restore_latest


INFERRED_SPLIT_FILE = "inferred_split.json"
EPOCH_PREDICTIONS = "epoch_predictions"  # DIR/epoch_predictions/<epoch>.npz


# ---------------------------------------------------------------- config

def check_config(config) -> None:
  """Fails at once, with what to fix, on bad values."""
  method = methods.get(config.loss.name)
  if method.kind != "train":
    raise ValueError(f"Method {method.name!r} is a {method.kind} of a trained run, not trained "
                     "itself; set config.loss.name to a training method.")
  settings = methods.settings_of(config)
  if method.reference and not str(settings[method.reference]):
    raise ValueError(f"{method.name!r} needs a reference run: set "
                     f"config.loss.settings.{method.reference} to the workdir of an ERM run "
                     "trained on the same data with the same seeds.")
  splits_lib.check_data_config(config.data)
  models.get_model(config.model.name, num_classes=splits_lib.spec(config.data).num_classes,
                   conv_impl=config.model.conv_impl)
  if config.optim.name not in optim.OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {config.optim.name!r}; use one of {optim.OPTIMIZERS}.")
  optim.make_schedule(config.optim, 1)  # A bad lr or schedule fails before anything is written.
  if config.train.epochs < 1 or config.train.batch_size < 1:
    raise ValueError("config.train.epochs and config.train.batch_size must be >= 1.")
  if eval_every_epochs(config) < 1:
    raise ValueError(f"config.train.eval_every_epochs must be >= 1; got "
                     f"{eval_every_epochs(config)}.")
  if config.train.batch_size > config.data.train_size:
    raise ValueError(f"batch_size {config.train.batch_size} > train_size "
                     f"{config.data.train_size}; lower config.train.batch_size.")
  replicas_lib.check_grid(config)
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
  method.check(config, settings=settings)
  if config.train.data_parallel:
    parallel.check_batch_size(config.train.batch_size, jax.device_count())
  elif jax.process_count() > 1:
    raise ValueError(f"{jax.process_count()} processes train one run only data-parallel; set "
                     "config.train.data_parallel=True (or run a single process).")
  replicas(config)


def eval_every_epochs(config) -> int:
  """How often the held-out splits are evaluated during training (the last epoch always is);
  1 for configs written before the field existed."""
  return int(config.train.get("eval_every_epochs", 1))


def shardable(method) -> bool:
  """Whether data-parallel training computes `method` exactly: a mean over examples, no state,
  no rows by index."""
  return (method.sliceable and method.init_extra is methods.base.no_extra
          and "index" not in method.batch_keys)


def model_of(config):
  """The module a config's method trains: its model, wrapped by methods.Method.wrap_model."""
  model = models.get_model(config.model.name, num_classes=splits_lib.spec(config.data).num_classes,
                           conv_impl=config.model.conv_impl)
  wrap = methods.get(config.loss.name).wrap_model
  return wrap(model) if wrap else model


def build(config):
  """(model, tx, steps_per_epoch) of a config: the method's model (model_of)."""
  model = model_of(config)
  steps = config.data.train_size // config.train.batch_size
  tx = optim.make_optimizer(config.optim, steps * config.train.epochs)
  return model, tx, steps


def step_kwargs(config, model, steps_per_epoch: int) -> dict:
  """The static settings of a run's train step (step.make_train_step's keywords)."""
  return dict(model=model, method=methods.get(config.loss.name),
              settings=methods.settings_of(config), steps_per_epoch=steps_per_epoch,
              warmup_steps=config.loss.warmup_epochs * steps_per_epoch,
              grad_norm=bool(config.train.get("grad_norm", True)))


def init_extra(config, train_split, reference=None) -> dict:
  """The method's state of every replica, [K, ...] on device (train_split: the host arrays;
  reference: the method's reference run, train/reference.py, None for a method without one)."""
  extra = methods.get(config.loss.name).init_extra(
      config, train_split, replicas(config), settings=methods.settings_of(config),
      reference=reference)
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
  state = jax.jit(jax.vmap(create))(params, {} if extra is None else extra)
  if replicas_lib.has_lr_grid(config):  # Each replica's own learning rate (optim.set_lrs).
    lrs = [r["lr"] for r in replicas(config)]
    state = state.replace(opt_state=optim.set_lrs(state.opt_state, lrs))
  return state


# ---------------------------------------------------------------- outputs

def save_predictions(workdir, preds: dict, epoch: int | None = None) -> None:
  """DIR/predictions.npz: the final params' predictions per split, [K, n]; with `epoch`,
  DIR/epoch_predictions/<epoch>.npz: those after that epoch (every epoch the held-out splits
  are evaluated, so that a selection may stop the run there)."""
  path = (pathlib.Path(workdir) / "predictions.npz" if epoch is None else
          pathlib.Path(workdir) / EPOCH_PREDICTIONS / f"{int(epoch)}.npz")
  io.write_npz(path, **{name: np.asarray(p, np.int8)
                        for name, p in jax.device_get(preds).items()})


def load_predictions(workdir) -> dict:
  """{split: int8 [K, n]} written after the last epoch, or {} when the run has none."""
  path = pathlib.Path(workdir) / "predictions.npz"
  return io.read_npz(path) if path.exists() else {}


def load_epoch_predictions(workdir) -> dict:
  """{epoch: {split: int8 [K, n]}} of every evaluated epoch, ascending; {} for a run trained
  before they were saved."""
  folder = pathlib.Path(workdir) / EPOCH_PREDICTIONS
  paths = folder.glob("*.npz") if folder.is_dir() else []
  return {int(p.stem): io.read_npz(p) for p in sorted(paths, key=lambda p: int(p.stem))}


def summarize(config, history: list) -> dict:
  """results.json: the headline accuracy at the headline grid point (mean over seeds), and per
  grid point its lambda (and lr with an lr grid), mean/std and per-seed values."""
  final = history[-1]["accuracy"]
  reps = replicas(config)

  def over_seeds(values):
    s = stats.mean_std(values)
    return {"mean": s["mean"], "std": s["std"], "values": [float(v) for v in values]}

  # The last epoch's loss terms per replica (summaries.loss_terms), None for old histories.
  terms = summaries.loss_terms(history[-1], [r["lam"] for r in reps])
  grid = []
  for g, point in enumerate(grid_points(config)):
    idx = [r["replica"] for r in reps if r["replica"] // config.num_seeds == g]
    grid.append({**point, "accuracy": {n: over_seeds([v[i] for i in idx])
                                       for n, v in final.items()}})
    if terms is not None:
      grid[-1].update({k: stats.over_seeds([terms[i][k] for i in idx]) for k in terms[0]})
  head = grid[replicas_lib.headline_index(config)]
  return {
      "headline_lam": head["lam"],
      **({"headline_lr": head["lr"]} if "lr" in head else {}),
      "accuracy": {n: s["mean"] for n, s in head["accuracy"].items()},
      "accuracy_std": {n: s["std"] for n, s in head["accuracy"].items()},
      "grid": grid,
      "replicas": [{**r, "accuracy": {n: v[r["replica"]] for n, v in final.items()},
                    **(terms[r["replica"]] if terms is not None else {})} for r in reps],
      "epochs": len(history),
      "train_time_s": float(sum(h["epoch_time_s"] for h in history)),
  }


# ---------------------------------------------------------------- reading a run back

def load_config(workdir) -> ml_collections.ConfigDict:
  return workdir_lib.load_config(workdir, kind="training")


def load_run(workdir, *, replica: int | None = 0, epoch: int | None = None):
  """(model, params, config) of the latest checkpoint that restores in a training workdir, or
  of the one after `epoch`.

  params are replica `replica`'s (default the first); replica=None gives the stacked [K, ...]
  params of every replica (see `replicas(config)` for their seeds, lambdas and lrs).
  """
  config = load_config(workdir)
  model, tx, _ = build(config)
  # On this process's first device, whatever devices and processes wrote the checkpoint.
  here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  mngr = checkpoint_manager(workdir)
  try:
    extra = checkpoints.saved_extra(mngr)
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here),
        jax.eval_shape(lambda: init_state(config, model, tx, extra)))
    if epoch is None:
      step, state, _ = restore_latest(mngr, abstract)
    else:
      step, state = epoch, checkpoints.restore_epoch(mngr, epoch, abstract)
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
