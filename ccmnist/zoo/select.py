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


def select(grid: list) -> dict:
  """{selection: {'index', 'lam', 'entry', 'criterion', 'score', 'measures': {m: mean_std +
  values}}} for every way of SELECTIONS that some grid point can be chosen by (run_measures'
  grid; a family's grid names each point's 'entry', else 'entry' is None)."""
  out = {}
  for way, criterion in SELECTIONS.items():
    g = select_point(grid, criterion, TIE_BREAKS.get(way))
    if g is None:
      continue
    point = grid[g]
    out[way] = {"index": g, "lam": point["lam"], "entry": point.get("entry"),
                "criterion": criterion,
                "score": float(np.mean(point["measures"][criterion])), "seeds": point["seeds"],
                "measures": {m: stats.over_seeds(point["measures"][m])
                             for m in evaluate.MEASURES}}
  return out
