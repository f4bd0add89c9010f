"""Summary statistics over seeds."""

import numpy as np


def mean_std(values) -> dict:
  """{'mean', 'std' (ddof 1; 0 for one value), 'n'} of the values that are not None."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if v.size == 0:
    return {"mean": None, "std": None, "n": 0}
  return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
          "n": int(v.size)}


def over_seeds(values) -> dict:
  """mean_std plus the per-seed values, in seed order (verdicts pair them across runs); a
  missing seed stays None."""
  return {**mean_std(values), "values": [None if v is None else float(v) for v in values]}
