"""The report's side of the attack suite: pure functions of attack.json's dict (the attack
stage's results) returning markdown lines or findings rows.

  section(attack)            the suite and masking-check section (markdown lines)
  certified_section(attack)  certified accuracy against L2 radius (markdown lines)
  findings(attack)           'the debiased model is harder to attack' under the suite's worst
                             case, targeted and untargeted: rows shaped as the report's findings
                             (claim, rule, runs, seeds, measured, the test's fields, holds,
                             strength), Holm-corrected as one family

A failed masking check is written beside every verdict that rests on the model it concerns.
"""

import numpy as np

from ccmnist.report import markdown
from ccmnist.report import verdicts

ATTACK_TITLES = {"apgd_ce": "APGD-CE", "apgd_t_dlr": "APGD-T (DLR)", "square": "Square"}
CHECK_TITLES = {"grey": "accuracy 0 at a grey-image eps", "black": "black-box <= white-box",
                "transfer": "transfer <= white-box", "budget": "more steps/restarts do not help"}


def _pct(v) -> str:
  return "n/a" if v is None else f"{100 * float(v):.1f}%"


def failed_checks(attack: dict, model: str) -> list:
  """['check: measured', ...] of the masking checks that failed on `model`."""
  checks = (((attack or {}).get("suite") or {}).get("masking_checks") or {}).get(model) or {}
  return [f"{k}: {c['measured']}" for k, c in checks.items() if not c["holds"]]


def section(attack: dict) -> list:
  """Markdown lines: per model the robust accuracy against each attack of the suite and the
  worst case, the study's PGD beside (targeted), and the masking checks."""
  su = (attack or {}).get("suite")
  if not su or not su.get("models"):
    return []
  models = su["models"]
  first = next(iter(models.values()))
  lines = ["## Attack suite and gradient-masking checks", "",
           f"Untargeted robust accuracy at Linf ε {first['eps']:g} (pixel units) on the first "
           f"{first['num_images']} attacked images: APGD-CE, targeted APGD-DLR over the top "
           "other classes, Square (black-box, forward passes only); an image is robust in the "
           "worst case only if no attack fools it. Targeted: argmax reaches the stage's target "
           "(the study's setting); the worst case adds the study's PGD.", ""]
  rows = []
  for name, m in models.items():
    ra, t = m["robust_accuracy"], m["targeted"]
    rows.append([name, m.get("replica", 0), _pct(m["clean_accuracy"]),
                 *(_pct(ra.get(k)) for k in ATTACK_TITLES),
                 f"**{_pct(m['worst_robust_accuracy'])}**",
                 _pct(t.get("pgd")), _pct(t["apgd_ce"]), _pct(t["apgd_dlr"]),
                 f"**{_pct(t['worst'])}**"])
  lines += markdown.table(["model", "replica", "clean", *ATTACK_TITLES.values(), "worst case",
                   "targeted: study's PGD", "APGD-CE", "APGD-DLR", "worst case"], rows)
  checks = su.get("masking_checks") or {}
  if checks:
    lines += ["Gradient-masking checks (a failure weakens every robustness verdict on that "
              "model; failures are repeated beside those verdicts):", ""]
    rows = []
    for name, cs in checks.items():
      rows.append([name] + [("ok" if cs[k]["holds"] else "**FAILED**") + f" ({cs[k]['measured']})"
                            if k in cs else "n/a" for k in CHECK_TITLES])
    lines += markdown.table(["model", *CHECK_TITLES.values()], rows)
  return lines


def certified_section(attack: dict) -> list:
  """Markdown lines: certified accuracy against L2 radius per model and sigma (randomized
  smoothing), with the figure's path."""
  sm = (attack or {}).get("smoothing")
  if not sm or not sm.get("models"):
    return []
  first = next(iter(sm["models"].values()))
  radii = first["radii"]
  lines = ["## Certified radii (randomized smoothing)", "",
           f"Certified accuracy (correct and certified at least this far) against the L2 "
           f"radius in pixel units, on {first['num_images']} images; CERTIFY with n0 "
           f"{sm['n0']}, n {sm['n']}, alpha {sm['alpha']:g}. The models were not trained with "
           "noise unless their method says so; a model certified near 0 is not smooth, not "
           "necessarily fragile.", ""]
  rows = []
  for name, m in sm["models"].items():
    for s, v in m["sigmas"].items():
      rows.append([name, s, _pct(v["abstain"]), f"{v['median_radius_correct']:.1f}",
                   *(_pct(a) for a in v["certified_accuracy"])])
  lines += markdown.table(["model", "σ", "abstain", "median radius (correct)",
                   *(f"r={r:g}" for r in radii)], rows)
  lines += ["![Certified accuracy against L2 radius](attack/figures/certified_accuracy.png)", ""]
  return lines


def _row(claim, rule, runs, a, b, *, direction, n_items, attack, seeds) -> tuple:
  """(row, test entry) of a findings row on the paired difference b - a (a the control, b the
  method); the entry is None when either is not measured."""
  measured = f"{runs[0]} {_pct(np.mean(a)) if a else 'n/a'}, {runs[1]} " \
             f"{_pct(np.mean(b)) if b else 'n/a'}"
  failed = [f"{m} {f}" for m in runs for f in failed_checks(attack, m)]
  if failed:
    measured += "; masking check failed: " + "; ".join(failed)
  row = {"claim": claim, "rule": rule, "runs": runs, "run_seeds": seeds,
         "seeds": len(a) if a and b else 0, "measured": measured}
  if not a or not b:
    return row, None
  sampling = verdicts.sampling_se(float(np.mean(a)), float(np.mean(b)), n_items)
  return row, (verdicts.paired_test(a, b), direction, sampling)


def findings(attack: dict, *, method: str = "counterfactual",
             control: str = "counterfactual@0", seeds=None) -> list:
  """Findings rows: the debiased model is harder to attack under the suite's worst case,
  judged as one family (verdicts.judge); seeds: those of the control's and the method's
  attacked replicas, when known.

  One value per replica the stage attacked (the attack stage attacks one replica per model).
  """
  models = (((attack or {}).get("suite") or {}).get("models")) or {}
  get = lambda m, f: [f(models[m])] if m in models else None
  n = next((m["num_images"] for m in models.values()), None)
  eps = next((m["eps"] for m in models.values()), None)
  runs = [control, method]
  rows, tests = zip(*[
      _row(f"The debiased model is harder to attack (worst case of APGD-CE, APGD-DLR and the "
           f"study's PGD, targeted, ε {eps}): argmax success", f"worst-case targeted success: "
           f"{method} < {control}", runs, get(control, lambda m: m["targeted"]["worst"]),
           get(method, lambda m: m["targeted"]["worst"]), direction=-1, n_items=n,
           attack=attack, seeds=seeds),
      _row(f"The debiased model is harder to attack (worst case of APGD-CE, APGD-T, Square, "
           f"untargeted, ε {eps}): robust accuracy", f"worst-case robust accuracy: {method} > "
           f"{control}", runs, get(control, lambda m: m["worst_robust_accuracy"]),
           get(method, lambda m: m["worst_robust_accuracy"]), direction=1, n_items=n,
           attack=attack, seeds=seeds),
  ])
  return verdicts.judge(list(rows), list(tests))
