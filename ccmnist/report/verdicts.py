"""Verdicts between runs that differ in one thing: paired tests over seeds, Holm-corrected.

A comparison pairs the seeds of two runs (grid points of one run share seeds, and so do runs of
one study): d_s = b_s - a_s. With n >= 2 seeds it is tested by the paired t-test (two-sided,
level 0.05: the one-sample t-test of d against 0, df n - 1), reported with the 95% t interval
of the mean difference and, as a distribution-free check, the exact sign-flip permutation
p-value (all 2^n sign flips of d). The p-values of the comparisons one report section makes
form a family, corrected by Holm's step-down method (comparisons of identical runs count
once). A difference is a finding, in the sign of its mean, when its Holm-adjusted p is below
the level; otherwise it is "not resolved with N seeds": the seeds at hand cannot tell it from
seed-to-seed noise, which is no evidence that the runs are alike.

A comparison whose control did not train (a seed of it below UNDERFIT_FRACTION of the train
accuracy of a reference run that shows the data can be fit) is "untestable": a method cannot be
judged against a control that never learned the task, so it gets that verdict with its reason
and leaves the Holm family.

With one seed there is no test: the verdict is the sign of the difference, marked "1 seed:
indicative", and no finding when it lies within 2 standard errors of the test set's own sampling
noise (sampling_se). A claim about one run's mean (threshold) is a one-sample t-test against
its bound, one-sided towards the side the mean lies on. Values may be infinite (a minimal
epsilon not found within its budget): equal infinities differ by 0, and an infinite difference
leaves the test undefined (p None, with the reason).
"""

import dataclasses
import math

import numpy as np
from scipy import stats

LEVEL = 0.05
INDICATIVE = "1 seed: indicative"
MAX_EXACT = 16  # Seeds up to which every sign flip is enumerated (2^16 flips).
# A control underfits when a seed of it trains to less than this share of the reference's mean
# train accuracy. Per seed, because the paired test pairs seeds: one seed that never left its
# plateau makes its difference a training failure, not an effect of the method.
UNDERFIT_FRACTION = 0.9


def _p(p, name: str = "p") -> str:
  """'p = 0.038' (two significant digits), 'p < 0.0001' below that."""
  return f"{name} = n/a" if p is None else (f"{name} < 0.0001" if p < 1e-4 else
                                            f"{name} = {p:.2g}")


def unresolved(n: int) -> str:
  """The words of a verdict the seeds cannot settle."""
  return f"not resolved with {n} seed{'s' if n != 1 else ''}"


NO_SPREAD = "exact sign-flip (no spread across seeds: t undefined)"


def _one_sample(d: np.ndarray, *, level: float, alternative: str = "two-sided") -> dict:
  """t, df, p and the (1 - level) t interval of the mean of d (scipy.stats), n >= 2. Without
  spread (every seed the same difference) t is undefined: the exact sign-flip p stands in."""
  n, mean = d.size, float(d.mean())
  # Rates computed as floats: differences equal up to rounding have no spread at all, where
  # scipy's t would be a ratio of rounding errors.
  if np.ptp(d) <= 1e-12 * max(1.0, abs(mean)):
    p = sign_flip_p(d, alternative=alternative)
    return {"test": NO_SPREAD, "statistic": None, "df": n - 1, "p": p, "ci": None,
            "reason": None if p is not None else f"no spread and over {MAX_EXACT} seeds"}
  r = stats.ttest_1samp(d, 0.0, alternative=alternative)
  half = float(stats.t.ppf(1 - level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
  return {"statistic": float(r.statistic), "df": n - 1, "p": float(r.pvalue),
          "ci": [mean - half, mean + half]}


def sign_flip_p(d, *, alternative: str = "two-sided") -> float | None:
  """Exact sign-flip permutation p-value of the mean of d (every one of the 2^n flips; None
  beyond MAX_EXACT seeds)."""
  d = np.asarray(d, np.float64)
  if d.size > MAX_EXACT or not np.isfinite(d).all():
    return None
  r = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                             alternative=alternative, vectorized=True, axis=-1)
  return float(r.pvalue)


def paired_test(a, b, *, level: float = LEVEL) -> dict:
  """The paired t-test of b - a over seeds: {'test', 'level', 'statistic', 'df', 'p',
  'p_exact', 'mean', 'ci', 'n', 'values', 'reason'} (p None: no test, 'reason' says why)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"paired seeds needed: got {a.shape} and {b.shape} values.")
  with np.errstate(invalid="ignore"):  # inf - inf, replaced just below.
    d = np.where(a == b, 0.0, b - a)  # Equal values differ by 0, also two infinities.
  out = {"test": "paired t", "level": level, "statistic": None, "df": None, "p": None,
         "p_exact": None, "mean": float(d.mean()), "ci": None, "n": int(d.size),
         "values": d.tolist(), "reason": None}
  if d.size == 1:
    out["reason"] = INDICATIVE
  elif not np.isfinite(d).all():
    out["reason"] = "an infinite difference leaves the test undefined"
  else:
    out.update(_one_sample(d, level=level), p_exact=sign_flip_p(d))
  return out


def threshold(values, *, at_least=None, at_most=None, level: float = LEVEL) -> dict:
  """The test of a claim about one run's seed mean, "mean >= at_least" or "mean <= at_most":
  a one-sample t-test against the bound, one-sided towards the side the mean lies on. Shaped
  as paired_test's dict with 'mean' and 'statistic' those of the signed margin (positive: on
  the claim's side) and 'bound'; with one seed, the side alone (indicative)."""
  if (at_least is None) == (at_most is None):
    raise ValueError("threshold needs exactly one of at_least and at_most.")
  v = np.asarray(values, np.float64)
  bound, sign = (at_least, 1.0) if at_least is not None else (at_most, -1.0)
  margin = sign * (v - bound)
  out = {"test": "one-sided one-sample t", "level": level,
         "statistic": None, "df": None, "p": None, "p_exact": None,
         "mean": float(margin.mean()), "ci": None, "n": int(v.size), "values": v.tolist(),
         "reason": INDICATIVE if v.size == 1 else None, "bound": bound}
  if v.size > 1:
    side = "greater" if margin.mean() >= 0 else "less"
    out.update(_one_sample(margin, level=level, alternative=side))
  return out


def both(first: dict, second: dict) -> dict:
  """Two threshold tests on the same seeds, both required: on the claim's side when both are
  (p: the larger, an intersection-union test), off it when either is (p: twice the smallest p
  of the parts off it, Bonferroni over the two)."""
  parts = [first, second]
  off = [t for t in parts if t["mean"] < 0]
  ps = [t["p"] for t in (off or parts)]
  p = None if None in ps else (min(1.0, 2 * min(ps)) if off else max(ps))
  return {"test": "both of 2 one-sided tests", "level": first["level"],
          "statistic": None, "df": None, "p": p, "p_exact": None,
          "mean": min(t["mean"] for t in parts),
          "ci": None, "n": first["n"], "values": None, "reason": first["reason"],
          "bound": None, "parts": parts}


def sampling_se(a: float, b: float, n: int) -> float:
  """Standard error of the difference of two accuracies (rates) measured on n items each: the
  noise of the test set itself, a floor for a one-seed comparison (it ignores the positive
  correlation of two models on the same items, so it errs on the large side)."""
  return math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def holm(p_values) -> list:
  """Holm-Bonferroni step-down adjusted p-values, in the given order: the i-th smallest of m
  times (m - i + 1), made monotone and capped at 1. None entries stay None and do not count
  towards m."""
  idx = [i for i, p in enumerate(p_values) if p is not None]
  m = len(idx)
  out, running = list(p_values), 0.0
  for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
    running = max(running, min(1.0, (m - rank) * p_values[i]))
    out[i] = running
  return out


@dataclasses.dataclass(frozen=True)
class Untestable:
  """A comparison that cannot be tested, and why (judge: its verdict, outside the family)."""
  reason: str


def underfit(control_train, reference_train, *, control: str = "the control",
             reference: str = "the reference", fraction: float = UNDERFIT_FRACTION):
  """Untestable(reason) when a seed of `control` trained to less than `fraction` of the mean
  train accuracy of `reference` (a run on the same data that fits it), else None; None too
  when either was not measured (no evidence of underfitting)."""
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1]; got {fraction}.")
  ctrl = [v for v in (control_train or []) if v is not None]
  ref = [v for v in (reference_train or []) if v is not None]
  if not ctrl or not ref:
    return None
  bound = fraction * float(np.mean(ref))
  low = [v for v in ctrl if v < bound]
  if not low:
    return None
  seeds = f"{len(low)} of {len(ctrl)} seeds" if len(ctrl) > 1 else "its one seed"
  return Untestable(
      f"{control} underfits (train {', '.join(f'{100 * v:.1f}%' for v in low)}: {seeds} "
      f"below {100 * bound:.1f}% = {100 * fraction:g}% of {reference}'s "
      f"{100 * float(np.mean(ref)):.1f}%)")


def _stat_text(test: dict) -> str:
  """'paired t(2) = 3.52, p = 0.072' (the parts of a compound test, joined)."""
  if "parts" in test:
    return "; ".join(_stat_text(t) for t in test["parts"])
  if test["statistic"] is None:
    return f"{test['test']}, {_p(test['p'])}"
  if test.get("bound") is not None:
    return f"one-sided t({test['df']}) = {test['statistic']:.2f} against {test['bound']:g}, " \
           f"{_p(test['p'])}"
  return f"paired t({test['df']}) = {test['statistic']:.2f}, {_p(test['p'])}"


def decide(test: dict, *, direction: int, adjusted_p=None, family=None, level: float = LEVEL,
           sampling: float | None = None) -> tuple:
  """(holds, strength) of the claim "the test's mean has the sign of `direction`" (+1 or -1).

  holds is True or False when the p-value (Holm-adjusted when given, over `family` comparisons)
  is below `level`, in the sign of the mean; None when the seeds do not resolve it. With one
  seed: the sign alone, unless within 2 of `sampling` (the test set's standard error of the
  difference, sampling_se).
  """
  if direction not in (1, -1):
    raise ValueError(f"direction must be +1 or -1; got {direction}.")
  n, mean = test["n"], test["mean"]
  if n == 1:
    if "bound" in test:  # A one-run claim: at the bound counts as meeting it.
      return (direction * mean >= 0), INDICATIVE
    if mean == 0:
      return None, INDICATIVE + ": no difference"
    if sampling is not None and abs(mean) <= 2 * sampling:
      return None, (f"{INDICATIVE}; difference {mean:+.4f} within 2 SE "
                    f"({2 * sampling:.4f}) of the test set's sampling noise")
    return direction * mean > 0, INDICATIVE
  if test["p"] is None:
    return None, f"{n} seeds: {test['reason']}: {unresolved(n)}"
  text = _stat_text(test)
  if "parts" in test:
    text += f", both: {_p(test['p'])}"
  p = test["p"]
  if adjusted_p is not None:
    text += f", Holm-adjusted {_p(adjusted_p)}" + (
        f" over {family} comparison{'s' if family != 1 else ''}" if family else "")
    p = adjusted_p
  text += f", {n} seeds"
  if test.get("p_exact") is not None and test["test"] != NO_SPREAD:
    text += f" (exact sign-flip {_p(test['p_exact'])})"
  if mean == 0:
    return None, text + f": no difference, {unresolved(n)}"
  if p < level:
    return direction * mean > 0, text
  return None, text + f": {unresolved(n)}"


def brief(f: dict) -> str:
  """A finding's test in a few words: 'paired t(4) = 5.2, Holm p = 0.02' (or 'p = ...' without
  a family, or the one-seed / untested reason)."""
  if f.get("p") is None:
    return f.get("strength") or INDICATIVE
  text = _p(f["p"])
  if f.get("statistic") is not None:
    text = f"t({f['df']}) = {f['statistic']:.2f}, " + text
  elif f.get("test") == NO_SPREAD:
    text = f"{NO_SPREAD}, {text}"
  if f.get("p_holm") is not None:
    text += ", " + _p(f["p_holm"], "Holm p")
  return text


def record(test: dict | None) -> dict:
  """The fields of a test a finding stores (results.json)."""
  keys = ("test", "level", "statistic", "df", "p", "p_exact", "ci")
  return {k: (test or {}).get(k) for k in keys}


def judge(rows: list, tests: list, *, level: float = LEVEL) -> list:
  """The findings rows of one report section, judged as one family: each row gets its test's
  fields (record), 'p_holm', 'family' (how many tests the correction spans), 'holds' and
  'strength'. tests[i]: (test, direction, sampling) for rows[i], None when not measured, or
  Untestable (its verdict "untestable: <reason>", outside the family)."""
  testable = lambda t: t is not None and not isinstance(t, Untestable)
  ps = [t[0]["p"] if testable(t) and t[0]["n"] > 1 else None for t in tests]
  adjusted = holm(ps)
  m = sum(p is not None for p in ps)
  out = []
  for row, t, adj in zip(rows, tests, adjusted):
    if not testable(t):
      out.append({**row, **record(None), "p_holm": None, "family": m, "holds": None,
                  "strength": "not measured" if t is None else f"untestable: {t.reason}"})
      continue
    test, direction, sampling = t
    holds, strength = decide(test, direction=direction, adjusted_p=adj, family=m, level=level,
                             sampling=sampling)
    out.append({**row, **record(test), "p_holm": adj, "family": m, "holds": holds,
                "strength": strength})
  return out


def dedupe(findings: list) -> list:
  """Comparisons of identical runs (the same per-seed values on both sides, 'a_values' and
  'b_values', of the same measure) as one: the first kept, with 'also' listing the others'
  'a vs b' keys, or, for the same two runs asked again under another reading, 'also_differ_in'
  that reading's 'differ_in'. A run that ignores what differs between cells (the grayscale
  oracle removes color, the one thing the ratios change) would otherwise be counted once per
  cell."""
  first, out = {}, []
  for f in findings:
    key = (f.get("measure"), tuple(f["a_values"]), tuple(f["b_values"]))
    if key in first:
      kept = first[key]
      if (f["a"], f["b"]) == (kept["a"], kept["b"]):
        if f.get("differ_in") and f.get("differ_in") != kept.get("differ_in"):
          kept.setdefault("also_differ_in", []).append(f["differ_in"])
      else:
        kept.setdefault("also", []).append(f"{f['a']} vs {f['b']}")
      continue
    first[key] = f = dict(f)
    out.append(f)
  return out
