"""Model selection by three rules, each a choice of grid point per run.

  val        no group labels: plain accuracy on the held-out split colored like train (what a
             practitioner has; DomainBed's training-domain validation)
  group_val  a small group-labelled held-out set: worst-group accuracy on val_unbiased (as
             Group DRO, JTT and DFR select)
  oracle     group-balanced accuracy on the unbiased test set itself (an upper bound, not a
             method)

Each way picks the grid point whose seed-mean criterion is largest (on a tie, the larger seed-mean
of its TIE_BREAKS measure, then the first; a grid point whose criterion is missing for a seed is
not a candidate) and reports mean +- std over seeds of every measure there, with the per-seed
values that verdicts pair across runs.

Early stopping (a method whose paper stops at the epoch its held-out selection picks: Group DRO,
JTT and their reweighting baselines): each seed of each grid point first stops at the evaluated
epoch where its own criterion (then tie break) is largest, the first of equals (JTT's code:
np.argmax over epochs); the grid point is then chosen on the stopped values. A way's selection
names each seed's epoch ('epochs'), or None where the run was read at its last epoch.
"""

import numpy as np

from ccmnist.zoo import evaluate
from ccmnist.util import stats

# Selection -> the measure it maximizes.
SELECTIONS = {"val": "val", "group_val": "val_unbiased_worst_group", "oracle": "group_balanced"}
# Selection -> the measure that settles a tie of its criterion: the worst group of a small
# val_unbiased is often empty of right answers at every grid point.
TIE_BREAKS = {"group_val": "val_unbiased_group_balanced"}


def _seed_mean(point: dict, measure: str | None) -> float | None:
  """The seed-mean of a grid point's `measure`; None when a seed lacks it."""
  values = point["measures"].get(measure) if measure else None
  if not values or any(v is None for v in values):
    return None
  return float(np.mean(values))


def select_point(grid: list, criterion: str, tie_break: str | None = None) -> int | None:
  """The index of the grid point maximizing the seed-mean of `criterion` (ties: of
  `tie_break`, then the first); None if none has it."""
  best, best_score = None, (-np.inf, -np.inf)
  for g, point in enumerate(grid):
    score = _seed_mean(point, criterion)
    if score is None:
      continue
    second = _seed_mean(point, tie_break)
    key = (score, -np.inf if second is None else second)
    if key > best_score:
      best, best_score = g, key
  return best


def stop_epoch(by_epoch: list, seed: int, criterion: str, tie_break: str | None = None):
  """The index into `by_epoch` (run_measures' evaluated epochs of one grid point) where seed
  number `seed` stops: the largest (criterion, tie_break), the first of equals; None when no
  epoch has the criterion."""
  best, best_key = None, (-np.inf, -np.inf)
  for i, row in enumerate(by_epoch):
    score = row["measures"][criterion][seed]
    if score is None:
      continue
    second = row["measures"][tie_break][seed] if tie_break else None
    key = (score, -np.inf if second is None else second)
    if key > best_key:
      best, best_key = i, key
  return best


def stopped(point: dict, criterion: str, tie_break: str | None = None) -> dict:
  """The grid point with each seed's measures read at its stop_epoch, and 'epochs' naming them
  (the point itself, 'epochs' None, when it holds no evaluated epochs)."""
  rows = point.get("by_epoch")
  if not rows:
    return {**point, "epochs": None}
  picks = [stop_epoch(rows, s, criterion, tie_break) for s in range(len(point["seeds"]))]
  picks = [len(rows) - 1 if i is None else i for i in picks]  # No criterion: the last epoch.
  return {**point, "epochs": [rows[i]["epoch"] for i in picks],
          "measures": {m: [rows[i]["measures"][m][s] for s, i in enumerate(picks)]
                       for m in point["measures"]}}


def select(grid: list, stop_early: bool = False) -> dict:
  """{selection: {'index', 'lam', 'entry', 'criterion', 'score', 'seeds', 'epochs',
  'measures': {m: mean_std + values}}} for every way of SELECTIONS that some grid point can be
  chosen by (run_measures' grid; a family's grid names each point's 'entry', else 'entry' is
  None). stop_early: each seed stops at its best evaluated epoch first (module docstring);
  'epochs' is None for a selection read at the last epoch."""
  out = {}
  for way, criterion in SELECTIONS.items():
    tie = TIE_BREAKS.get(way)
    points = ([stopped(p, criterion, tie) for p in grid] if stop_early else
              [{**p, "epochs": None} for p in grid])
    g = select_point(points, criterion, tie)
    if g is None:
      continue
    point = points[g]
    out[way] = {"index": g, "lam": point["lam"], "entry": point.get("entry"),
                "criterion": criterion,
                "score": float(np.mean(point["measures"][criterion])), "seeds": point["seeds"],
                "epochs": point["epochs"],
                "measures": {m: stats.over_seeds(point["measures"][m])
                             for m in evaluate.MEASURES}}
  return out
