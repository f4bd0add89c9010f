"""Model selection by three rules, each a choice of grid point per run.

  val        no group labels: plain accuracy on the held-out split colored like train (what a
             practitioner has; DomainBed's training-domain validation)
  group_val  a small group-labelled held-out set: worst-group accuracy on val_unbiased (as
             Group DRO, JTT and DFR select)
  oracle     group-balanced accuracy on the unbiased test set itself (an upper bound, not a
             method)

Each way picks the grid point whose seed-mean criterion is largest (the first on a tie; a grid
point whose criterion is missing for a seed is not a candidate) and reports mean +- std over
seeds of every measure there, with the per-seed values that verdicts pair across runs.
"""

import numpy as np

from ccmnist.zoo import evaluate
from ccmnist.util import stats

# Selection -> the measure it maximizes.
SELECTIONS = {"val": "val", "group_val": "val_unbiased_worst_group", "oracle": "group_balanced"}


def select_point(grid: list, criterion: str) -> int | None:
  """The index of the grid point maximizing the seed-mean of `criterion`; None if none has it."""
  best, best_score = None, -np.inf
  for g, point in enumerate(grid):
    values = point["measures"].get(criterion)
    if not values or any(v is None for v in values):
      continue
    score = float(np.mean(values))
    if score > best_score:
      best, best_score = g, score
  return best


def select(grid: list) -> dict:
  """{selection: {'index', 'lam', 'criterion', 'score', 'measures': {m: mean_std + values}}}
  for every way of SELECTIONS that some grid point can be chosen by (run_measures' grid)."""
  out = {}
  for way, criterion in SELECTIONS.items():
    g = select_point(grid, criterion)
    if g is None:
      continue
    point = grid[g]
    out[way] = {"index": g, "lam": point["lam"], "criterion": criterion,
                "score": float(np.mean(point["measures"][criterion])), "seeds": point["seeds"],
                "measures": {m: stats.over_seeds(point["measures"][m])
                             for m in evaluate.MEASURES}}
  return out
