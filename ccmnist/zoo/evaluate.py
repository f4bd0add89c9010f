"""The benchmark's measures of a run, from its predictions.npz and its data's split arrays.

Per replica, on the unbiased test set (test_easy, colors uniform: rho 0.1):

  group_balanced  the mean over its (digit, color) cells that hold examples of each cell's
                  accuracy: the papers' metric (LfF's MultiDimAverageMeter over 10 x 10 cells)
  worst_cell      the lowest of those cells' accuracies
  unbiased        plain accuracy (every example weighs the same)
  aligned / conflicting / worst_group   its bias-aligned and bias-conflicting examples, and its
                  lowest (digit x aligned) group of 20

then the all-conflicting test_hard, and what a model selection may read: val (colored like
train, plain accuracy) and val_unbiased (rho 0.1, small, group-labelled: plain, group-balanced
and worst-group accuracy). Measured after the last epoch and after every evaluated epoch
(by_epoch), where a selection that stops early reads each seed. Pure numpy apart from
measure_saved_predictions, which reads and writes.
"""

import pathlib

import numpy as np

from ccmnist.data import groups
from ccmnist.eval import metrics
from ccmnist.train import runs as runs_lib
from ccmnist.util import io

# Every measure of a replica, in report order.
MEASURES = ("group_balanced", "unbiased", "worst_group", "worst_cell", "aligned", "conflicting",
            "test_hard", "val", "val_unbiased", "val_unbiased_group_balanced",
            "val_unbiased_worst_group")
EVAL_FILE = "benchmark_eval.json"


def worst_group_accuracy(preds, labels, aligned) -> float | None:
  """The lowest accuracy over the (digit, aligned) groups that hold examples; None for none."""
  preds, labels = np.asarray(preds), np.asarray(labels)
  ids = groups.group_ids(labels, aligned)
  correct = preds == labels
  accs = [float(correct[ids == g].mean()) for g in np.unique(ids)]
  return min(accs) if accs else None


def cell_accuracies(preds, labels, colors) -> np.ndarray:
  """float[k]: the accuracy of each (label, color) cell that holds examples (LfF's
  MultiDimAverageMeter, its empty cells left out), in (label, color) order."""
  preds, labels, colors = (np.asarray(a) for a in (preds, labels, colors))
  if not preds.shape == labels.shape == colors.shape or labels.ndim != 1:
    raise ValueError(f"preds, labels and colors must be 1-d of one length; got {preds.shape}, "
                     f"{labels.shape} and {colors.shape}.")
  cells, ids = np.unique(np.stack([labels, colors], 1), axis=0, return_inverse=True)
  ids = ids.reshape(-1)
  counts = np.bincount(ids, minlength=len(cells))
  right = np.bincount(ids, weights=(preds == labels).astype(np.float64), minlength=len(cells))
  return right / np.maximum(counts, 1)


def group_balanced_accuracy(preds, labels, colors) -> float | None:
  """The mean over the (label, color) cells that hold examples of each cell's accuracy (the
  papers' metric); None for no examples."""
  accs = cell_accuracies(preds, labels, colors)
  return float(accs.mean()) if accs.size else None


def worst_cell_accuracy(preds, labels, colors) -> float | None:
  """The lowest accuracy over the (label, color) cells that hold examples; None for none."""
  accs = cell_accuracies(preds, labels, colors)
  return float(accs.min()) if accs.size else None


def replica_measures(preds: dict, splits: dict) -> dict:
  """{measure: value or None} of one replica; preds: {split: [n] predicted digits}."""
  out = dict.fromkeys(MEASURES)
  test = splits["test_easy"]
  if "test_easy" in preds:
    p = np.asarray(preds["test_easy"])
    out["unbiased"] = metrics.accuracy(p, test["labels"])
    out.update(metrics.group_accuracy(p, test["labels"], test["aligned"]))
    out["worst_group"] = worst_group_accuracy(p, test["labels"], test["aligned"])
    out["group_balanced"] = group_balanced_accuracy(p, test["labels"], test["colors"])
    out["worst_cell"] = worst_cell_accuracy(p, test["labels"], test["colors"])
  for name in ("test_hard", "val", "val_unbiased"):
    if name in preds and name in splits:
      out[name] = metrics.accuracy(np.asarray(preds[name]), splits[name]["labels"])
  if "val_unbiased" in preds and "val_unbiased" in splits:
    p, split = np.asarray(preds["val_unbiased"]), splits["val_unbiased"]
    out["val_unbiased_group_balanced"] = group_balanced_accuracy(p, split["labels"],
                                                                 split["colors"])
    out["val_unbiased_worst_group"] = worst_group_accuracy(p, split["labels"], split["aligned"])
  return out


def _check_shapes(preds: dict, splits: dict, k: int) -> None:
  for name, p in preds.items():
    if name in splits and np.shape(p) != (k, len(splits[name]["labels"])):
      raise ValueError(f"predictions of split {name} have shape {np.shape(p)}, not "
                       f"({k}, {len(splits[name]['labels'])}): the run's predictions.npz does "
                       "not belong to this data; delete the run's directory and rerun.")


def _per_point(per: list, g: int, num_seeds: int) -> dict:
  """{m: [per seed]} of grid point g from per-replica measures."""
  rows = [p for p in per if p["replica"] // num_seeds == g]
  return {m: [p["measures"][m] for p in rows] for m in MEASURES}


def run_measures(preds: dict, splits: dict, reps: list, num_seeds: int,
                 by_epoch: dict | None = None) -> dict:
  """{'replicas': [...], 'grid': [{'lam', 'seeds', 'measures': {m: [per seed]}, 'by_epoch':
  [{'epoch', 'measures'}]}]}.

  preds: {split: [K, n]} after the last epoch; reps: runs.replicas(config) (replica r = grid
  point r // num_seeds, seed r % num_seeds); by_epoch: {epoch: preds} of every evaluated epoch
  (runs.load_epoch_predictions), ascending, measured alike ('by_epoch' absent without them).
  """
  _check_shapes(preds, splits, len(reps))
  measure = lambda p: [{**r, "measures": replica_measures(
      {n: v[r["replica"]] for n, v in p.items()}, splits)} for r in reps]
  per = measure(preds)
  epochs = {}
  for epoch, p in sorted((by_epoch or {}).items()):
    _check_shapes(p, splits, len(reps))
    epochs[int(epoch)] = measure(p)
  grid = []
  for g in range(len(reps) // num_seeds):
    rows = [p for p in per if p["replica"] // num_seeds == g]
    grid.append({"lam": rows[0]["lam"], "seeds": [p["seed"] for p in rows],
                 "measures": _per_point(per, g, num_seeds)})
    if epochs:
      grid[-1]["by_epoch"] = [{"epoch": e, "measures": _per_point(m, g, num_seeds)}
                              for e, m in epochs.items()]
  return {"replicas": per, "grid": grid}


def measure_saved_predictions(run_dir, splits: dict) -> dict:
  """Measures of a finished training workdir -> run_dir/benchmark_eval.json (returned)."""
  run_dir = pathlib.Path(run_dir)
  preds = runs_lib.load_predictions(run_dir)
  if not preds:
    raise FileNotFoundError(f"{run_dir / 'predictions.npz'} not found: the run has not "
                            "finished; run the benchmark's train stage first.")
  config = runs_lib.load_config(run_dir)
  out = run_measures(preds, splits, runs_lib.replicas(config), config.num_seeds,
                     runs_lib.load_epoch_predictions(run_dir))
  io.write_json(run_dir / EVAL_FILE, out)
  return out
