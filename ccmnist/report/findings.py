"""The study's qualitative claims, each tested on the collected records (collect.py).

A finding names the runs it compares and the seeds behind it; it is tested by verdicts.py
(the paired t-test of the seed differences, or a one-sample t-test of a claim about one run),
and the findings of the section form one family, Holm-corrected. The attack suite's findings
are a family of their own (attack_suite.findings).
"""

import math

import numpy as np

from ccmnist.report import attack_suite
from ccmnist.report import claims
from ccmnist.report import markdown
from ccmnist.report import verdicts

_pct = markdown.mean_percent


def _point(res, name: str, lam=None):
  """Grid point `lam` (default the study's) of run `name`, or None."""
  run = res["runs"].get(name)
  if not run:
    return None
  return next((p for p in run["grid"] if p["lam"] == (run["downstream_lam"] if lam is None
                                                      else lam)), None)


def seed_values(res, name: str, key: str, lam=None):
  """Per-seed values of accuracy `key` of run `name` at grid point `lam` (default the study's),
  or None when the run (or grid point) is missing."""
  point = _point(res, name, lam)
  stat = point and point["accuracy"].get(key)
  return stat and stat.get("values")


def run_seeds(res, name: str, lam=None):
  """The seeds of run `name` at grid point `lam` (default the study's), or None."""
  point = _point(res, name, lam)
  return point and point.get("seeds")


def model_seeds(res, model: str):
  """The seeds of a downstream model ('counterfactual' or 'counterfactual@0'): those of the
  replicas the attack stage attacked when it names them (every seed's, in its order), else the
  run's; None when unknown."""
  entries = (((res.get("attack") or {}).get("models") or {}).get(model) or {}).get("seeds")
  if entries and all("seed" in e for e in entries):
    return [e["seed"] for e in entries]
  name, _, lam = model.partition("@")
  seeds = run_seeds(res, name, float(lam) if lam else None)
  attacked = ((res.get("attack") or {}).get("runs") or {}).get(model)
  if not seeds or not attacked:
    return seeds
  replicas = attacked[1] if isinstance(attacked[1], (list, tuple)) else [attacked[1]]
  return [seeds[int(r) % len(seeds)] for r in replicas]


def attack_values(res, model: str, eps: float) -> dict | None:
  """Per-seed attack numbers of one attacked model at `eps` (one value per attacked seed, in
  the attack stage's order): argmax success, success by the study's target-probability
  criterion, median minimal epsilon, and the clean confidence beside that criterion (mean
  max-softmax on the attacked clean images, and the share of them above its threshold; None
  when the stage did not measure it); None when the model was not attacked."""
  m = ((res.get("attack") or {}).get("models") or {}).get(model)
  if not m:
    return None
  entries = m.get("seeds") or [m]
  if any(eps not in e["sweep"]["epsilons"] for e in entries):
    return None
  at = lambda e, key: e["sweep"][key][e["sweep"]["epsilons"].index(eps)]
  conf = [e.get("clean_confidence") for e in entries]
  return {"argmax": [at(e, "success_argmax") for e in entries],
          "prob": [at(e, "success_prob") for e in entries],
          # No success within eps_max (null) is the largest budget of all.
          "min_eps": [float("inf") if e["min_eps"]["median"] is None else e["min_eps"]["median"]
                      for e in entries],
          "confidence": None if None in conf else [c["mean_max_softmax"] for c in conf],
          "confident_share": None if None in conf else [c["share_above_threshold"]
                                                        for c in conf]}


def run_differences(res, a: str, b: str) -> str:
  """'optimizer sgd lr 0.001 vs adam lr 0.001; epochs 5 vs 3': the training settings in which
  runs a and b differ besides their loss (from the study config), or '' when unknown."""
  runs = (res.get("config") or {}).get("runs") or {}
  if a not in runs or b not in runs:
    return ""
  opt = lambda r: " ".join(f"{k} {r['optim'][k]:g}" if k != "name" else str(r["optim"][k])
                           for k in ("name", "lr", "momentum") if k in r["optim"]
                           and (k == "name" or r["optim"][k]))
  parts = [] if opt(runs[a]) == opt(runs[b]) else [f"optimizer {opt(runs[a])} vs {opt(runs[b])}"]
  ea, eb = runs[a]["train"].get("epochs"), runs[b]["train"].get("epochs")
  if ea != eb:
    parts.append(f"epochs {ea} vs {eb}")
  return "; ".join(parts)


def finding(claim, rule, runs, measured, values, test, *, direction=1, sampling=None,
            seeds=None, key=None) -> tuple:
  """(row, test entry) of one claim, judged later with its section (verdicts.judge); `values`
  are the per-seed lists it is decided on (None: missing, then the entry is None), `test` a
  function returning its verdicts test, `seeds` the seeds of each run in `runs`, `key` the
  claim's short name where the report's summary quotes it (paper.SUMMARY_KEYS)."""
  row = {"claim": claim, "rule": rule, "runs": runs, "run_seeds": seeds, "key": key,
         "seeds": 0 if any(v is None for v in values) else len(values[0]), "measured": measured}
  if any(v is None for v in values):
    return row, None
  return row, (test(), direction, sampling)


def compare(claim, rule, runs, a, b, *, direction, fmt_value=_pct, n_items=None, seeds=None,
            key=None):
  """A finding on the paired difference b - a (a = the control, b = the method); n_items: how
  many test items each rate was measured on (its sampling noise bounds a one-seed verdict)."""
  measured = (f"{runs[0]} {fmt_value(a)}, {runs[1]} {fmt_value(b)}"
              if a is not None and b is not None else "n/a")
  sampling = (verdicts.sampling_se(float(np.mean(a)), float(np.mean(b)), n_items)
              if n_items and a is not None and b is not None else None)
  return finding(claim, rule, runs, measured, [a, b], lambda: verdicts.paired_test(a, b),
                 direction=direction, sampling=sampling, seeds=seeds, key=key)


# ---------------------------------------------------------------- step size

STUDY_LR = 1e-3  # The study's SGD learning rate, the lr grid's reference point.
LR_RUN, LONG_RUN = "erm_sgd_lr", "cheater_long"


def lr_point(res, lr, name: str = LR_RUN):
  """The grid point of run `name`'s lr grid at learning rate `lr`, or None."""
  run = res["runs"].get(name) or {}
  return next((p for p in run.get("grid", ()) if p.get("lr") == lr), None)


def best_lr(res, name: str = LR_RUN) -> tuple:
  """(lr, criterion, k): the lr-grid point of best mean val_unbiased (held out, colored
  uniformly), or of best test_hard when the run has no val_unbiased (criterion says which), and
  how many points it was chosen among; (None, None, 0) without the run."""
  grid = [p for p in ((res["runs"].get(name) or {}).get("grid") or ()) if "lr" in p]
  if not grid:
    return None, None, 0
  crit = ("val_unbiased" if all("val_unbiased" in p["accuracy"] for p in grid)
          else "test_hard")
  best = max(grid, key=lambda p: p["accuracy"][crit]["mean"])
  return best["lr"], crit, len(grid)


def chosen(test: dict, k: int) -> dict:
  """A paired test of a grid point chosen among k after looking: its p-values times k
  (Bonferroni, capped at 1), before Holm's correction over the table."""
  scale = lambda p: None if p is None else min(1.0, k * p)
  return {**test, "p": scale(test["p"]), "p_exact": scale(test.get("p_exact"))}


def lr_values(res, lr, key: str = "test_hard"):
  """Per-seed values of `key` at lr-grid point `lr` of the lr run, or None."""
  point = lr_point(res, lr)
  stat = point and point["accuracy"].get(key)
  return stat and stat.get("values")


def loss_tail(point) -> tuple:
  """(first, last, values): the epochs that open the last 10% of training (at least one epoch
  before the last) and the last, and the per-seed training losses at each, or None without
  curves."""
  curves = (point or {}).get("train_loss")
  if not curves:
    return None
  n = len(curves[0])
  first = max(1, n - max(1, math.ceil(0.1 * n)))
  return first, n, ([c[first - 1] for c in curves], [c[-1] for c in curves])


def step_size_rows(res) -> list:
  """(row, test) of what moves plain ERM's hard-set accuracy, each claimed to raise it (does
  not hold: it lowers it), with the runs that show it: step size (the lr grid's best point
  against the study's lr 1e-3), training length (the cheater's run at lr 1e-3 against
  cheater_long, trained longer at the same lr), whether cheater_long's training loss still
  falls in its last 10% of epochs, and adaptivity (Adam against SGD at its best lr, matched
  epochs). A point chosen after looking carries the choice (chosen)."""
  lr, crit, k = best_lr(res)
  n_test = ((res.get("config") or {}).get("data") or {}).get("test_size")
  ref = f"{LR_RUN}[lr={STUDY_LR:g}]"
  at = f"{LR_RUN}[lr={lr:g}]" if lr is not None else f"{LR_RUN}[best lr]"
  lr_seeds = lambda lr_: (lr_point(res, lr_) or {}).get("seeds")
  hard = lambda name: seed_values(res, name, "test_hard")
  how = (f"lr chosen on {crit} among {k}" if crit == "val_unbiased" else
         f"lr chosen on test_hard itself among {k} (no val_unbiased split)")
  epochs = {n: (res["runs"].get(n) or {}).get("epochs") for n in (LR_RUN, LONG_RUN, "erm_adam")}
  matched = ("matched epochs" if epochs["erm_adam"] == epochs[LR_RUN] else
             f"epochs not matched: {epochs['erm_adam']} vs {epochs[LR_RUN]}")
  step = compare(
      "(new) A larger step size raises plain ERM's hard-set accuracy: SGD at the grid's best lr "
      "beats the study's lr 1e-3", f"test_hard: {at} > {ref} ({how}: p × {max(k - 1, 1)} for the "
      "choice; the same data, batch, epochs, seeds)", [ref, at],
      lr_values(res, STUDY_LR), lr_values(res, lr), direction=1, n_items=n_test,
      seeds=[lr_seeds(STUDY_LR), lr_seeds(lr)], key="step_size")
  length = compare(
      "(new) Training longer at the study's lr 1e-3 raises the hard-set accuracy",
      f"test_hard: {LONG_RUN} ({epochs[LONG_RUN]} epochs) > {ref} ({epochs[LR_RUN]} epochs: "
      "the cheater's run at lr 1e-3); the same data, batch, seeds",
      [ref, LONG_RUN], lr_values(res, STUDY_LR), hard(LONG_RUN), direction=1, n_items=n_test,
      seeds=[lr_seeds(STUDY_LR), run_seeds(res, LONG_RUN)], key="training_length")
  tail = loss_tail(_point(res, LONG_RUN))
  first, last, (a, b) = tail if tail else (None, None, (None, None))
  falls = compare(
      f"(new) {LONG_RUN}'s training loss still falls in its last 10% of epochs (its budget, "
      "not a plateau, ends it)", f"mean training loss of epoch {last} < epoch {first}",
      [f"{LONG_RUN}[epoch {first}]", f"{LONG_RUN}[epoch {last}]"], a, b, direction=-1,
      fmt_value=lambda v: "n/a" if v is None else f"{np.mean(v):.4f}",
      seeds=[run_seeds(res, LONG_RUN)] * 2, key="long_loss_falls")
  adapt = compare(
      "(new) Adam's adaptivity raises the hard-set accuracy beyond SGD at its best step size",
      f"test_hard: erm_adam > {at} ({matched}; {how}: p × {max(k, 1)} for the choice)",
      [at, "erm_adam"], lr_values(res, lr), hard("erm_adam"), direction=1, n_items=n_test,
      seeds=[lr_seeds(lr), run_seeds(res, "erm_adam")], key="adaptivity")
  # The step-size comparison needs both points trained: lr 1e-3 still on its initial plateau
  # (the quick profile's epochs) says nothing about step size, only about training progress.
  under = lr is not None and verdicts.underfit(
      lr_values(res, STUDY_LR, "train"), lr_values(res, lr, "train"),
      control=f"lr {STUDY_LR:g}", reference=f"lr {lr:g}")
  step = _with_choice(step, k - 1)
  if under and step[1] is not None:
    step = (step[0], under)
  return [step, length, falls, _with_choice(adapt, k)]


def _with_choice(entry: tuple, k: int) -> tuple:
  """A (row, test) entry whose test carries the choice among k points (chosen)."""
  row, test = entry
  if test is None:
    return entry
  return row, (chosen(test[0], max(k, 1)),) + tuple(test[1:])


def step_size_findings(res) -> list:
  """The step-size rows (step_size_rows), judged as a family of their own; findings() judges
  the same rows with the study's claims."""
  rows, tests = zip(*step_size_rows(res))
  return verdicts.judge(list(rows), list(tests))


def findings(res) -> list:
  """The study's qualitative claims, each tested between runs that differ in one thing.

  Every entry names the runs it compares (`runs`), how many seeds stand behind it (`seeds`)
  and which (`run_seeds`), and its test (verdicts.judge's fields); the claims form one family.
  The λ = 0 point of a method's grid ('counterfactual@0') is its control: same optimizer, data,
  epochs and seeds. Attacks are judged by scale-free measures (argmax success, median minimal
  ε) paired over every attacked seed; the study's target-probability criterion is shown beside,
  with the models' clean confidence. The study's own pair (cheater vs consistency, as it
  trained them) is a row of its own, its rule naming what else differs between the two.
  """
  eps = claims.PGD_EPS
  n_test = ((res.get("config") or {}).get("data") or {}).get("test_size")
  n_attacked = (res.get("attack") or {}).get("num_images")
  hard = lambda name, lam=None: seed_values(res, name, "test_hard", lam)
  seeds = lambda name, lam=None: run_seeds(res, name, lam)
  easy = seed_values(res, "cheater", "test_easy")
  cf_lam = (res["runs"].get("counterfactual") or {}).get("downstream_lam")
  cf, cf0 = f"counterfactual@{cf_lam:g}" if cf_lam is not None else "counterfactual", \
      "counterfactual@0"
  out = [
      finding("The cheater learns the color shortcut",
               "cheater: test_easy >= 90% and test_hard <= 50%", ["cheater"],
               f"test_easy {_pct(easy)}, test_hard {_pct(hard('cheater'))}",
               [easy, hard("cheater")], lambda: verdicts.both(
                   verdicts.threshold(easy, at_least=0.9),
                   verdicts.threshold(hard("cheater"), at_most=0.5)), seeds=[seeds("cheater")],
               key="shortcut"),
      finding("Counterfactual consistency recovers the hard set",
               f"{cf}: test_hard >= 70% (study: 85.2%)", [cf],
               f"test_hard {_pct(hard('counterfactual'))}", [hard("counterfactual")],
               lambda: verdicts.threshold(hard("counterfactual"), at_least=0.7),
               seeds=[seeds("counterfactual")], key="consistency"),
      compare("Consistency training, not its optimizer, removes the shortcut",
               f"test_hard: {cf} > {cf0} (λ = 0: the same Adam, data, epochs)", [cf0, cf],
               hard("counterfactual", 0.0), hard("counterfactual"), direction=1, n_items=n_test,
               seeds=[seeds("counterfactual", 0.0), seeds("counterfactual")],
               key="consistency_control"),
      finding("Plain ERM with Adam (lr 1e-3, the cheater's epochs) also learns the shortcut "
               "(the study implies the shortcut is the data's doing)", "erm_adam: test_hard <= 50%",
               ["erm_adam"], f"test_hard {_pct(hard('erm_adam'))}", [hard("erm_adam")],
               lambda: verdicts.threshold(hard("erm_adam"), at_most=0.5),
               seeds=[seeds("erm_adam")]),
      finding("... and with SGD momentum (lr 1e-2, 0.9)", "erm_momentum: test_hard <= 50%",
               ["erm_momentum"],
               f"test_hard {_pct(hard('erm_momentum'))}", [hard("erm_momentum")],
               lambda: verdicts.threshold(hard("erm_momentum"), at_most=0.5),
               seeds=[seeds("erm_momentum")]),
      # What moves the hard-set accuracy (step size, training length, adaptivity), each with
      # the runs that show it: not "the optimizer" (Adam against SGD at the study's lr).
      *step_size_rows(res),
  ]
  att = {m: attack_values(res, m, eps) for m in ("cheater", "counterfactual", cf0)}
  # Seed s of one model is paired with seed s of another (the study's runs share seeds).
  both_n = lambda *ms: min((len(att[m]["argmax"]) for m in ms if att[m]), default=0)


  def get(m, k, n=None):
    """Model m's per-seed values of measure k, its first n seeds; None when not measured."""
    return (att[m][k][:n] or None) if att[m] and att[m][k] else None

  mean = lambda v: "n/a" if not v else f"{float(np.mean(v)):.2f}"
  label = lambda m: cf if m == "counterfactual" else m  # As the rows name the runs.
  conf = lambda m: (f"{label(m)} {mean(get(m, 'confidence'))}, "
                    f"{_pct(get(m, 'confident_share'))}" if get(m, "confidence")
                    else f"{label(m)} n/a")
  thr = (((res.get("attack") or {}).get("config") or {}).get("success") or {}).get(
      "threshold", 0.9)
  conf_note = ("clean confidence (mean max-softmax on the attacked clean images, share of them "
               f"above {thr:g}): ")
  n = both_n(cf0, "counterfactual")
  attacked = [(model_seeds(res, cf0) or [])[:n] or None,
              (model_seeds(res, "counterfactual") or [])[:n] or None]
  out.append(compare(
      f"The debiased model is harder to attack (targeted PGD, ε {eps}): argmax success",
      f"argmax success: counterfactual < {cf0} (both Adam); p > 0.9 and clean confidence "
      "beside", [cf0, cf], get(cf0, "argmax", n), get("counterfactual", "argmax", n),
      direction=-1, n_items=n_attacked, seeds=attacked, key="attack"))
  out[-1][0]["measured"] += (f"; study's criterion p > 0.9: {cf0} {_pct(get(cf0, 'prob', n))}, "
                             f"{cf} {_pct(get('counterfactual', 'prob', n))}; " + conf_note
                             + f"{conf(cf0)}; {conf('counterfactual')}")
  out.append(compare(
      "The debiased model is harder to attack: median minimal ε (scale-free)",
      f"median minimal ε: counterfactual > {cf0}", [cf0, cf], get(cf0, "min_eps", n),
      get("counterfactual", "min_eps", n), direction=1,
      fmt_value=lambda v: "n/a" if v is None else " / ".join(f"{x:.2f}" for x in v),
      seeds=attacked))
  # The study's own pair, as it trained them: a verdict of its own, on the scale-free measure.
  pn = both_n("cheater", "counterfactual")
  differ = run_differences(res, "cheater", "counterfactual") or "the optimizer"
  out.append(compare(
      f"The study's pair: the debiased model is harder to attack (targeted PGD, ε {eps}): "
      "argmax success", f"argmax success: counterfactual < cheater, as the study trained them "
      f"(they differ in more than the method: {differ})", ["cheater", cf],
      get("cheater", "argmax", pn), get("counterfactual", "argmax", pn), direction=-1,
      n_items=n_attacked, seeds=[(model_seeds(res, "cheater") or [])[:pn] or None,
                                 (model_seeds(res, "counterfactual") or [])[:pn] or None],
      key="study_pair"))
  out[-1][0]["measured"] += (f"; study's criterion p > 0.9: cheater "
                             f"{_pct(get('cheater', 'prob', pn))}, {cf} "
                             f"{_pct(get('counterfactual', 'prob', pn))} (study: 98% vs 67%); "
                             + conf_note + f"{conf('cheater')}; {conf('counterfactual')}")
  rows, tests = zip(*out)
  return verdicts.judge(list(rows), list(tests)) + penalty_findings(res) + attack_suite.findings(
      res.get("attack"), method="counterfactual", control=cf0, seeds=attacked)


# The runs of the input-gradient penalty: trained to fit (the study's formula, Adam) and, when
# the study runs it too, at the study's own optimizer and budget.
PENALTY_RUNS = ("gradient_penalty", "gradient_penalty_study")


def penalty_ratios(run: dict) -> str:
  """'λ·penalty/CE: 0.1: 1.2e-03, 10: 0.12, ...': the penalty's weight beside the cross-entropy
  at each λ > 0 of a run record (mean over seeds; n/a where not recorded)."""
  cells = []
  for p in run["grid"]:
    if p["lam"] > 0:
      r = (p.get("penalty_ratio") or {}).get("mean")
      cells.append(f"{p['lam']:g}: " + ("n/a" if r is None else f"{r:.2g}"))
  return "λ·penalty/CE " + ", ".join(cells)


def best_penalty_lam(run: dict):
  """The λ > 0 of a run record with the largest mean test_hard accuracy (None: none measured)."""
  scored = [(p["accuracy"]["test_hard"]["mean"], p["lam"]) for p in run["grid"]
            if p["lam"] > 0 and (p["accuracy"].get("test_hard") or {}).get("mean") is not None]
  return max(scored)[1] if scored else None


def penalty_findings(res) -> list:
  """The input-gradient penalty against its own λ = 0 control (same optimizer, data, epochs and
  seeds), judged as one family of its own: at the study's λ (claims.GRADIENT_PENALTY) and at
  the λ > 0 with the largest mean test_hard, a choice made after looking at the hard set, so the
  Holm correction spans every λ > 0 compared, not only the two reported (one row when the two
  λ coincide or no λ > 0 was measured: one test is one finding). The study-settings run
  (gradient_penalty_study), when the study has it, adds its comparison at the study's λ to the
  family. Untestable when the λ = 0 control underfits (verdicts.underfit, against the cheater's
  train accuracy); each row's `measured` gives λ·penalty / CE per λ."""
  n_test = ((res.get("config") or {}).get("data") or {}).get("test_size")
  lam, study_hard = claims.GRADIENT_PENALTY["lam"], claims.GRADIENT_PENALTY["test_hard"]
  planned = (res.get("config") or {}).get("train_runs") or ()
  cheater_train = seed_values(res, "cheater", "train")
  rows, tests, where = [], [], {}
  for name in PENALTY_RUNS:
    run = res["runs"].get(name)
    if name != "gradient_penalty" and not run and name not in planned:
      continue
    study_run = name.endswith("_study")
    lams = [lam] if study_run or not run else [p["lam"] for p in run["grid"] if p["lam"] > 0]
    untestable = run and verdicts.underfit(
        seed_values(res, name, "train", 0.0), cheater_train, control="the λ = 0 control",
        reference="the cheater")
    for g in dict.fromkeys(lams + [lam]):  # The study's λ even when the grid lacks it.
      at = f"{name}@{g:g}"
      row, test = compare(
          "", f"test_hard: {at} > {name}@0 (λ = 0: the same optimizer, noise-free data, epochs)",
          [f"{name}@0", at], seed_values(res, name, "test_hard", 0.0),
          seed_values(res, name, "test_hard", g), direction=1, n_items=n_test,
          seeds=[run_seeds(res, name, 0.0), run_seeds(res, name, g)])
      if run:
        row["measured"] += "; " + penalty_ratios(run)
      where[name, g] = len(rows)
      rows.append(row)
      tests.append(untestable if untestable and test is not None else test)
  judged = verdicts.judge(rows, tests)
  m = judged[0]["family"] if judged else 0
  family = f"; Holm over all {m} penalty comparisons (every λ > 0)" if m else ""
  out = []
  for name in PENALTY_RUNS:
    if (name, lam) not in where:
      continue
    setting = "the study's optimizer" if name.endswith("_study") else "trained to fit"
    fit = name == "gradient_penalty"
    best = best_penalty_lam(res["runs"].get(name) or {"grid": []}) if fit else None
    also = ", also its best λ > 0 on test_hard" if best == lam else ""
    picks = [(lam, f"at the study's λ {lam:g}{also} ({setting}; the study: "
              f"{100 * study_hard:.1f}%)", "penalty" if fit else "penalty_study_settings")]
    if best is not None and best != lam:  # One test is one finding.
      picks.append((best, f"at its best λ {best:g} ({setting}; chosen on test_hard after "
                    "looking)", "penalty_best"))
    for g, words, key in picks:
      f = judged[where[name, g]]
      out.append({**f, "claim": f"The input-gradient penalty helps on the hard set {words}",
                  "rule": f["rule"] + family, "key": key})
  return out


def budget(config: dict) -> str:
  """'20000 digits, 3-4 epochs': a study's training budget, from its config dict."""
  epochs = sorted({r["train"]["epochs"] for r in config["runs"].values()})
  span = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
  seeds = config["num_seeds"]
  return f"{config['data']['train_size']} digits, {span} epochs, {seeds} seed{'s' * (seeds != 1)}"


def verdict_word(f) -> str:
  """'holds', 'does not hold', 'untestable', 'not measured' or 'not resolved': a finding's
  verdict in one phrase (the three without a yes or no all store holds = None)."""
  if f["holds"] is not None:
    return "holds" if f["holds"] else "does not hold"
  strength = f.get("strength") or ""
  if strength.startswith("untestable"):
    return "untestable"
  return "not measured" if strength == "not measured" else "not resolved"


def profile_differences(res, other: dict) -> list:
  """The findings whose verdicts (in words: untestable is not 'not resolved') differ from
  another study's, matched by claim."""
  theirs = {f["claim"]: f for f in other.get("findings") or []}
  return [{"claim": f["claim"], "here": verdict_word(f), "there": verdict_word(theirs[f["claim"]]),
           "measured_here": f["measured"], "measured_there": theirs[f["claim"]]["measured"]}
          for f in res["findings"] if f["claim"] in theirs
          and verdict_word(f) != verdict_word(theirs[f["claim"]])]
