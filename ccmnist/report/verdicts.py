"""Verdicts between runs that differ in one thing, judged against their seed-to-seed spread.

A comparison pairs the seeds of two runs (grid points of one run share seeds, and so do runs of
one study): d_s = b_s - a_s. With n >= 2 seeds it is a finding only when the mean difference
lies beyond 2 standard errors of the paired differences; with one seed it is reported by its
sign and marked "1 seed: indicative". Values may be infinite (a minimal epsilon not found within
its budget): such a seed's difference is infinite, and equal infinities differ by 0.
"""

import math

import numpy as np

INDICATIVE = "1 seed: indicative"


def paired_difference(a, b) -> dict:
  """{'mean', 'se', 'n', 'values'} of b - a over paired seeds (se None for one seed)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"paired seeds needed: got {a.shape} and {b.shape} values.")
  with np.errstate(invalid="ignore"):  # inf - inf, replaced just below.
    d = np.where(a == b, 0.0, b - a)  # Equal values differ by 0, also two infinities.
  se = None
  if d.size > 1:  # An infinite difference among several seeds leaves the spread unknown.
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if np.isfinite(d).all() else math.inf
  return {"mean": float(d.mean()), "se": se, "n": int(d.size), "values": d.tolist()}


def sampling_se(a: float, b: float, n: int) -> float:
  """Standard error of the difference of two accuracies (rates) measured on n items each: the
  noise of the test set itself, a floor for a one-seed comparison (it ignores the positive
  correlation of two models on the same items, so it errs on the large side)."""
  return math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def decide(diff: dict, *, direction: int, sampling: float | None = None) -> tuple:
  """(holds, strength) of the claim "b - a has the sign of `direction`" (+1 or -1).

  holds is True or False when the difference is resolved, None when it lies within 2 standard
  errors (not a finding either way). sampling: the test set's own standard error of the
  difference (sampling_se); with one seed a difference within 2 of it is no finding either.
  """
  if direction not in (1, -1):
    raise ValueError(f"direction must be +1 or -1; got {direction}.")
  m = direction * diff["mean"]
  if diff["mean"] == 0:
    return None, (INDICATIVE if diff["n"] == 1 else f"{diff['n']} seeds") + ": no difference"
  if diff["n"] == 1:
    if sampling is not None and abs(diff["mean"]) <= 2 * sampling:
      return None, (f"{INDICATIVE}; difference {diff['mean']:+.4f} within 2 SE "
                    f"({2 * sampling:.4f}) of the test set's sampling noise")
    return m > 0, INDICATIVE
  margin = 2 * diff["se"]
  strength = (f"{diff['n']} seeds: mean difference {diff['mean']:+.4f}, "
              f"2 SE {margin:.4f}")
  if abs(diff["mean"]) <= margin:
    return None, strength + ": within 2 SE, not a finding"
  return m > 0, strength


def threshold(values, *, at_least=None, at_most=None) -> tuple:
  """(holds, strength) of "the seed mean is >= at_least / <= at_most" (a claim about one run)."""
  v = np.asarray(values, np.float64)
  mean = float(v.mean())
  ok = (at_least is None or mean >= at_least) and (at_most is None or mean <= at_most)
  return bool(ok), INDICATIVE if v.size == 1 else f"{v.size} seeds: mean {mean:.4f}"
