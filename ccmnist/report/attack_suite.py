"""The report's side of the attack suite: pure functions of attack.json's dict (the attack
stage's results) returning markdown lines or findings rows.

  section(attack)            the suite and masking-check section (markdown lines)
  certified_section(attack)  certified accuracy against L2 radius (markdown lines)
  findings(attack)           'the debiased model is harder to attack' under the suite's worst
                             case, targeted and untargeted: rows shaped as the report's findings
                             (claim, rule, runs, seeds, measured, the test's fields, holds,
                             strength), Holm-corrected as one family

Each model's suite entry is its first seed's, with every seed's in its 'seeds' list (the attack
stage attacks every seed); the findings pair seed s of the control with seed s of the method. A
failed masking check, on any seed, is written beside every verdict that rests on the model it
concerns.
"""

import numpy as np

from ccmnist.attacks import smoothing
from ccmnist.report import markdown
from ccmnist.report import verdicts

ATTACK_TITLES = {"apgd_ce": "APGD-CE", "apgd_t_dlr": "APGD-T (DLR)", "square": "Square"}
CHECK_TITLES = {"grey": "accuracy 0 at a grey-image eps", "black": "black-box <= white-box",
                "transfer": "transfer <= white-box", "budget": "more steps/restarts do not help"}


def _pct(v) -> str:
  return "n/a" if v is None else f"{100 * float(v):.1f}%"


def seed_entries(entry: dict) -> list:
  """Every seed's suite result of one model's entry (an entry without 'seeds': one seed)."""
  return entry.get("seeds") or [entry]


def _seed_checks(attack: dict) -> list:
  """[{model: checks}] per seed (attack.json before seeds were attacked: the one seed's)."""
  su = (attack or {}).get("suite") or {}
  return su.get("masking_checks_seeds") or [su.get("masking_checks") or {}]


def _seed_label(attack: dict, model: str, s: int) -> str:
  """'seed 2' of a model's s-th attacked seed (its index when the seed is not recorded)."""
  entries = seed_entries((((attack or {}).get("suite") or {}).get("models") or {}).get(model)
                         or {})
  return f"seed {entries[s].get('seed', s) if s < len(entries) else s}"


def failed_checks(attack: dict, model: str) -> list:
  """['check: measured', ...] of the masking checks that failed on `model`, on any seed (each
  named by its seed when more than one was checked)."""
  per_seed = _seed_checks(attack)
  out = []
  for s, checks in enumerate(per_seed):
    tag = f" ({_seed_label(attack, model, s)})" if len(per_seed) > 1 else ""
    out += [f"{k}{tag}: {c['measured']}" for k, c in (checks.get(model) or {}).items()
            if not c["holds"]]
  return out


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
  for name, entry in models.items():  # One row per seed's replica.
    for m in seed_entries(entry):
      ra, t = m["robust_accuracy"], m["targeted"]
      rows.append([name, m.get("seed", "n/a"), m.get("replica", 0), _pct(m["clean_accuracy"]),
                   *(_pct(ra.get(k)) for k in ATTACK_TITLES),
                   f"**{_pct(m['worst_robust_accuracy'])}**",
                   _pct(t.get("pgd")), _pct(t["apgd_ce"]), _pct(t["apgd_dlr"]),
                   f"**{_pct(t['worst'])}**"])
  lines += markdown.table(["model", "seed", "replica", "clean", *ATTACK_TITLES.values(),
                           "worst case", "targeted: study's PGD", "APGD-CE", "APGD-DLR",
                           "worst case"], rows)
  per_seed = _seed_checks(attack)
  if any(per_seed):
    lines += ["Gradient-masking checks (a failure weakens every robustness verdict on that "
              "model; failures are repeated beside those verdicts):", ""]
    rows = []
    for s, checks in enumerate(per_seed):
      for name, cs in checks.items():
        label = f"{name} ({_seed_label(attack, name, s)})" if len(per_seed) > 1 else name
        rows.append([label] + [("ok" if cs[k]["holds"] else "**FAILED**")
                               + f" ({cs[k]['measured']})" if k in cs else "n/a"
                               for k in CHECK_TITLES])
    lines += markdown.table(["model", *CHECK_TITLES.values()], rows)
  return lines


def certified_section(attack: dict) -> list:
  """Markdown lines: certified accuracy against L2 radius per model and sigma (randomized
  smoothing), with the figure's path; a radius beyond what CERTIFY can give at that sigma
  with n draws reads '—', not 0."""
  sm = (attack or {}).get("smoothing")
  if not sm or not sm.get("models"):
    return []
  first = next(iter(sm["models"].values()))
  radii = first["radii"]
  sigmas = list(first["sigmas"])
  reach = {s: smoothing.max_radius(float(s), int(sm["n"]), float(sm["alpha"])) for s in sigmas}
  seeds = attack.get("seeds") or []
  where = f" of {attack['split']}" if attack.get("split") else ""
  who = f", the models of seed {seeds[0]}" if seeds else ""
  lines = ["## Certified radii (randomized smoothing)", "",
           f"Certified accuracy (correct and certified at least this far) against the L2 "
           f"radius in pixel units, on {first['num_images']} images{where}{who}; CERTIFY with "
           f"n0 {sm['n0']}, n {sm['n']}, alpha {sm['alpha']:g}. With n draws no image is "
           f"certified beyond σ·Φ⁻¹(alpha^(1/n)) ("
           + ", ".join(f"σ {s}: {reach[s]:.1f}" for s in sigmas)
           + "); a radius past it reads —. The models were not trained with noise unless their "
           "method says so; a model certified near 0 is not smooth, not necessarily fragile.",
           ""]
  rows = []
  for name, m in sm["models"].items():
    for s, v in m["sigmas"].items():
      rows.append([name, s, _pct(v["abstain"]), f"{v['median_radius_correct']:.1f}",
                   *(_pct(a) if r <= reach[s] else "—"
                     for r, a in zip(radii, v["certified_accuracy"]))])
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
  judged as one family (verdicts.judge) by the paired test over seeds; seeds: those of the
  control's and the method's attacked replicas, when the suite's entries do not record them.

  One value per seed's replica the stage attacked, seed s of the control paired with seed s of
  the method.
  """
  models = (((attack or {}).get("suite") or {}).get("models")) or {}
  n = min((len(seed_entries(models[m])) for m in (control, method) if m in models), default=0)
  get = lambda m, f: [f(e) for e in seed_entries(models[m])[:n]] if m in models else None
  recorded = [[e.get("seed") for e in seed_entries(models[m])[:n]] if m in models else None
              for m in (control, method)]
  if all(r and None not in r for r in recorded):
    seeds = recorded
  n_items = next((m["num_images"] for m in models.values()), None)
  eps = next((m["eps"] for m in models.values()), None)
  runs = [control, method]
  rows, tests = zip(*[
      _row(f"The debiased model is harder to attack (worst case of APGD-CE, APGD-DLR and the "
           f"study's PGD, targeted, ε {eps}): argmax success", f"worst-case targeted success: "
           f"{method} < {control}", runs, get(control, lambda m: m["targeted"]["worst"]),
           get(method, lambda m: m["targeted"]["worst"]), direction=-1, n_items=n_items,
           attack=attack, seeds=seeds),
      _row(f"The debiased model is harder to attack (worst case of APGD-CE, APGD-T, Square, "
           f"untargeted, ε {eps}): robust accuracy", f"worst-case robust accuracy: {method} > "
           f"{control}", runs, get(control, lambda m: m["worst_robust_accuracy"]),
           get(method, lambda m: m["worst_robust_accuracy"]), direction=1, n_items=n_items,
           attack=attack, seeds=seeds),
  ])
  return verdicts.judge(list(rows), list(tests))
