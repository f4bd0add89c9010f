"""A training workdir's checkpoints (DIR/checkpoints/, orbax): written, restored, inspected."""

import pathlib

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from ccmnist.train import parallel


def checkpoint_manager(workdir, keep_every: int | None = None) -> ocp.CheckpointManager:
  """DIR/checkpoints/<epoch>: the newest two, and with keep_every every epoch it divides (the
  epochs whose held-out predictions were saved, where a model selection may stop a run)."""
  return ocp.CheckpointManager(
      pathlib.Path(workdir).absolute() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=2, keep_period=keep_every, create=True))


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


def restore_epoch(mngr: ocp.CheckpointManager, epoch: int, target):
  """The state saved after `epoch`, restored into `target`'s structure; ValueError naming the
  epochs kept when it was not kept (a run trained before the evaluated epochs were kept)."""
  kept = sorted(mngr.all_steps())
  if int(epoch) not in kept:
    raise ValueError(f"{mngr.directory} keeps no checkpoint of epoch {epoch} (it keeps "
                     f"{kept}): the run was trained before every evaluated epoch was kept; "
                     "delete its directory and train it again.")
  return mngr.restore(int(epoch), args=ocp.args.StandardRestore(target))


def saved_extra(mngr):
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
