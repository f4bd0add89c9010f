"""The study's results.json and report.md, from what the stages wrote into the study workdir.

Every cell that the study also reports reads "ours (study: X)". Numbers are mean +- std over
seeds when the study ran more than one.
"""

import pathlib
import platform
import shutil
import time

import jax
import numpy as np

from ccmnist import layout
from ccmnist import plots
from ccmnist.eval import run as eval_run
from ccmnist.plots import eval as eval_plots
from ccmnist.report import claims
from ccmnist.report import verdicts
from ccmnist.train import runs as runs_lib
from ccmnist.util import io
from ccmnist.util import stats

SPLITS = ("train", "test_easy", "test_hard")
METHOD_TITLES = {
    "cheater": "Cheater (ERM, SGD lr 1e-3, the study's)",
    "erm_adam": "ERM + Adam (control)",
    "erm_momentum": "ERM + SGD momentum (control)",
    "gradient_penalty": "Input-gradient penalty",
    "color_gradient_penalty": "Color-gradient penalty (new)",
    "counterfactual": "Counterfactual consistency",
}


def fmt(stat, *, pct=True, digits=1) -> str:
  """'85.2' or '85.2 +- 1.3' (percent) from a mean_std dict or a number."""
  if stat is None:
    return "n/a"
  if not isinstance(stat, dict):
    stat = {"mean": stat, "std": 0.0, "n": 1}
  if stat["mean"] is None:
    return "n/a"
  k = 100.0 if pct else 1.0
  text = f"{k * stat['mean']:.{digits}f}"
  if stat.get("n", 1) > 1:
    text += f" ± {k * stat['std']:.{digits}f}"
  return text


def vs(ours, claim, **kw) -> str:
  return f"{fmt(ours, **kw)} (study: {fmt(claim, **kw)})" if claim is not None else fmt(ours, **kw)


# ---------------------------------------------------------------- collecting

def _over_seeds(values) -> dict:
  """mean, std, n and the per-seed values (in seed order: verdicts pair them across runs)."""
  return {**stats.mean_std(values), "values": [None if v is None else float(v) for v in values]}


def collect_run(study, workdir, name: str) -> dict | None:
  """Per grid point (lambda), mean +- std over seeds of every accuracy we report."""
  rdir = layout.run_dir(workdir, name)
  results, ev = io.read_json(rdir / "results.json"), io.read_json(rdir / "eval.json")
  if results is None:
    return None
  config = layout.run_config(study, name)
  grid = []
  for g, lam in enumerate(runs_lib.lam_grid(config)):
    reps = [r for r in runs_lib.replicas(config) if r["replica"] // config.num_seeds == g]
    point = {"lam": lam, "seeds": [r["seed"] for r in reps], "accuracy": {}}
    final = {r["replica"]: r["accuracy"] for r in results["replicas"]}
    for split in final[reps[0]["replica"]]:
      point["accuracy"][split] = _over_seeds([final[r["replica"]][split] for r in reps])
    if ev is not None:
      evr = {r["replica"]: r for r in ev["replicas"]}
      for split in SPLITS:
        for key in ("aligned", "conflicting", "unbiased_equivalent", "worst_class"):
          point["accuracy"][f"{split}/{key}"] = _over_seeds(
              [evr[r["replica"]]["splits"][split][key] for r in reps])
      point["color_swap_3_brown_pred_8"] = _over_seeds(
          [evr[r["replica"]]["color_swap"]["three_brown"]["p_pred_8"] for r in reps])
    grid.append(point)
  return {"grid": grid, "downstream_lam": layout.downstream_lam(study, name),
          "train_time_s": results.get("train_time_s"), "epochs": results.get("epochs"),
          "curves": str(rdir / "metrics.jsonl")}


def point_at(run: dict, lam=None) -> dict:
  lam = run["downstream_lam"] if lam is None else lam
  return next(p for p in run["grid"] if p["lam"] == lam)


def model_selection(run: dict) -> dict:
  """Which lambda each criterion picks, and the hard-test accuracy it then reports."""
  out = {}
  for criterion in ("test_hard", "val", "val_unbiased"):
    scored = [(p["accuracy"][criterion]["mean"], p) for p in run["grid"]
              if criterion in p["accuracy"]]
    if not scored:
      continue
    best = max(scored, key=lambda sp: sp[0])[1]
    out[criterion] = {"lam": best["lam"], "test_hard": best["accuracy"]["test_hard"]}
  return out


def environment() -> dict:
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "python": platform.python_version(), "platform": platform.platform(),
          "device": f"{dev.platform} {dev.device_kind}", "device_count": jax.device_count()}


def collect(study, workdir) -> dict:
  workdir = pathlib.Path(workdir)
  runs = {n: collect_run(study, workdir, n) for n in layout.train_runs(study)}
  runs = {n: r for n, r in runs.items() if r is not None}
  return {
      "config": study.to_dict(),
      "runs": runs,
      "model_selection": {n: model_selection(r) for n, r in runs.items() if len(r["grid"]) > 1},
      "interpret": io.read_json(layout.analysis_dir(workdir, "interpret") / "interpret.json"),
      "attack": io.read_json(layout.analysis_dir(workdir, "attack") / "attack.json"),
      "stages": layout.read_stage_times(workdir),
      "findings": None,  # Filled in below, from the numbers above.
      "environment": environment(),
      "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
  }


def _seed_values(res, name: str, key: str, lam=None):
  """Per-seed values of accuracy `key` of run `name` at grid point `lam` (default the study's),
  or None when the run (or grid point) is missing."""
  run = res["runs"].get(name)
  if not run:
    return None
  point = next((p for p in run["grid"] if p["lam"] == (run["downstream_lam"] if lam is None
                                                       else lam)), None)
  stat = point and point["accuracy"].get(key)
  return stat and stat.get("values")


def _attack_values(res, model: str, eps: float) -> dict | None:
  """Scale-free and study-criterion attack numbers of one attacked model at `eps` (one value
  each: the attack stage analyses seed 0), or None when it was not attacked."""
  m = ((res.get("attack") or {}).get("models") or {}).get(model)
  if not m or eps not in m["sweep"]["epsilons"]:
    return None
  k = m["sweep"]["epsilons"].index(eps)
  median = m["min_eps"]["median"]
  return {"argmax": [m["sweep"]["success_argmax"][k]], "prob": [m["sweep"]["success_prob"][k]],
          # No success within eps_max (null) is the largest budget of all.
          "min_eps": [float("inf") if median is None else median]}


def _pct(values) -> str:
  return "n/a" if values is None else f"{100 * float(np.mean(values)):.1f}%"


def _finding(claim, rule, runs, measured, values, decision) -> dict:
  """One findings entry; `values` are the per-seed lists it was decided on (None: missing)."""
  if any(v is None for v in values):
    return {"claim": claim, "rule": rule, "runs": runs, "seeds": 0, "measured": measured,
            "holds": None, "strength": "not measured"}
  holds, strength = decision()
  return {"claim": claim, "rule": rule, "runs": runs, "seeds": len(values[0]),
          "measured": measured, "holds": holds, "strength": strength}


def _both(first: tuple, second: tuple) -> tuple:
  """(holds, strength) of two threshold claims on the same seeds, both required."""
  return first[0] and second[0], second[1]


def _compare(claim, rule, runs, a, b, *, direction, fmt_value=_pct, n_items=None):
  """A finding on the paired difference b - a (a = the control, b = the method); n_items: how
  many test items each rate was measured on (its sampling noise bounds a one-seed verdict)."""
  measured = (f"{runs[0]} {fmt_value(a)}, {runs[1]} {fmt_value(b)}"
              if a is not None and b is not None else "n/a")

  def decision():
    sampling = (verdicts.sampling_se(float(np.mean(a)), float(np.mean(b)), n_items)
                if n_items else None)
    return verdicts.decide(verdicts.paired_difference(a, b), direction=direction,
                           sampling=sampling)
  return _finding(claim, rule, runs, measured, [a, b], decision)


def findings(res) -> list:
  """The study's qualitative claims, each tested between runs that differ in one thing.

  Every entry names the runs it compares (`runs`) and how many seeds stand behind it (`seeds`).
  The λ = 0 point of a method's grid ('counterfactual@0') is its control: same optimizer, data,
  epochs and seeds. Attacks are judged by scale-free measures (argmax success, median minimal
  ε); the study's target-probability criterion is shown beside.
  """
  eps = claims.PGD_EPS
  n_test = ((res.get("config") or {}).get("data") or {}).get("test_size")
  n_attacked = (res.get("attack") or {}).get("num_images")
  hard = lambda name, lam=None: _seed_values(res, name, "test_hard", lam)
  easy = _seed_values(res, "cheater", "test_easy")
  cf_lam = (res["runs"].get("counterfactual") or {}).get("downstream_lam")
  gp_lam = (res["runs"].get("gradient_penalty") or {}).get("downstream_lam")
  cf, cf0 = f"counterfactual@{cf_lam:g}" if cf_lam is not None else "counterfactual", \
      "counterfactual@0"
  gp = f"gradient_penalty@{gp_lam:g}" if gp_lam is not None else "gradient_penalty"
  out = [
      _finding("The cheater learns the color shortcut",
               "cheater: test_easy >= 90% and test_hard <= 50%", ["cheater"],
               f"test_easy {_pct(easy)}, test_hard {_pct(hard('cheater'))}",
               [easy, hard("cheater")], lambda: _both(
                   verdicts.threshold(easy, at_least=0.9),
                   verdicts.threshold(hard("cheater"), at_most=0.5))),
      _finding("Counterfactual consistency recovers the hard set",
               f"{cf}: test_hard >= 70% (study: 85.2%)", [cf],
               f"test_hard {_pct(hard('counterfactual'))}", [hard("counterfactual")],
               lambda: verdicts.threshold(hard("counterfactual"), at_least=0.7)),
      _compare("Consistency training, not its optimizer, removes the shortcut",
               f"test_hard: {cf} > {cf0} (λ = 0: the same Adam, data, epochs)", [cf0, cf],
               hard("counterfactual", 0.0), hard("counterfactual"), direction=1, n_items=n_test),
      _compare("The input-gradient penalty helps on the hard set (the study: it sits between "
               "the cheater and consistency)",
               f"test_hard: {gp} > gradient_penalty@0 (λ = 0: the same SGD, noise-free data, "
               "epochs)", ["gradient_penalty@0", gp],
               hard("gradient_penalty", 0.0), hard("gradient_penalty"), direction=1,
               n_items=n_test),
      _finding("Plain ERM learns the shortcut whatever the optimizer: with Adam (the study "
               "implies the shortcut is the data's doing)", "erm_adam: test_hard <= 50%",
               ["erm_adam"], f"test_hard {_pct(hard('erm_adam'))}", [hard("erm_adam")],
               lambda: verdicts.threshold(hard("erm_adam"), at_most=0.5)),
      _finding("... and with SGD momentum", "erm_momentum: test_hard <= 50%", ["erm_momentum"],
               f"test_hard {_pct(hard('erm_momentum'))}", [hard("erm_momentum")],
               lambda: verdicts.threshold(hard("erm_momentum"), at_most=0.5)),
      _compare("(new) The optimizer moves the hard-set accuracy of plain ERM",
               "test_hard: erm_adam > cheater (ERM, the same data and epochs; Adam vs the "
               "study's SGD)", ["cheater", "erm_adam"], hard("cheater"), hard("erm_adam"),
               direction=1, n_items=n_test),
  ]
  att = {m: _attack_values(res, m, eps) for m in ("cheater", "counterfactual", cf0)}
  get = lambda m, k: att[m] and att[m][k]
  out.append(_compare(
      f"The debiased model is harder to attack (targeted PGD, ε {eps}): argmax success",
      f"argmax success: counterfactual < {cf0} (both Adam); study's pair and p > 0.9 beside",
      [cf0, cf], get(cf0, "argmax"), get("counterfactual", "argmax"), direction=-1,
      n_items=n_attacked))
  out[-1]["measured"] += (f"; study's criterion p > 0.9: {cf0} {_pct(get(cf0, 'prob'))}, "
                          f"{cf} {_pct(get('counterfactual', 'prob'))}; study's pair: cheater "
                          f"{_pct(get('cheater', 'prob'))} vs {cf} "
                          f"{_pct(get('counterfactual', 'prob'))} (study: 98% vs 67%)")
  out.append(_compare(
      "The debiased model is harder to attack: median minimal ε (scale-free)",
      f"median minimal ε: counterfactual > {cf0}", [cf0, cf], get(cf0, "min_eps"),
      get("counterfactual", "min_eps"), direction=1,
      fmt_value=lambda v: "n/a" if v is None else f"{v[0]:.2f}"))
  return out


# ---------------------------------------------------------------- markdown

def _table(header, rows) -> list:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines + [""]


def _heading(lines, title: str, intro: str) -> None:
  lines += [f"## {title}", "", intro, ""]


def _fig(lines, workdir, rel, caption):
  if (pathlib.Path(workdir) / rel).exists():
    lines += [f"![{caption}]({rel})", f"*{caption}*", ""]


def _acc(point, split):
  return point["accuracy"].get(split)


def section_cheater(res, lines):
  run = res["runs"].get("cheater")
  if not run:
    return
  p = point_at(run)
  lines += ["## 1. The cheater learns the shortcut", ""]
  lines += _table(["", "ours (study claims)"], [
      ["train accuracy (95% aligned)", vs(_acc(p, "train"), claims.CHEATER["train"])],
      ["test_easy accuracy (95% aligned)", fmt(_acc(p, "test_easy"))],
      ["test_hard accuracy (never aligned)", vs(_acc(p, "test_hard"), claims.CHEATER["test_hard"])],
      ["color-swap probe: brown 3s called 8", vs(p.get("color_swap_3_brown_pred_8"),
                                                 claims.COLOR_SWAP_3_BROWN)],
  ])


def section_grid(res, lines, name, title, claim_rows):
  run = res["runs"].get(name)
  if not run:
    return
  lines += [f"## {title}", ""]
  rows = []
  for p in run["grid"]:
    claim = claim_rows.get(p["lam"], (None, None))
    rows.append([p["lam"], vs(_acc(p, "train"), claim[0]), fmt(_acc(p, "test_easy")),
                 vs(_acc(p, "test_hard"), claim[1]), fmt(_acc(p, "val")),
                 fmt(_acc(p, "val_unbiased"))])
  lines += _table(["λ", "train", "test_easy", "test_hard", "val (aligned)", "val (unbiased)"],
                  rows)


def section_gradcam(res, lines, workdir):
  interp = res.get("interpret")
  if not interp:
    return
  _heading(lines, "3. Grad-CAM: where the models look",
           "Activation spread = entropy (nats) of the normalized Grad-CAM map of the predicted "
           "class, mean over the hard test set (max log 784 = 6.66: uniform).")
  rows = []
  for name, m in interp["models"].items():
    run = res["runs"].get(name)
    p = point_at(run) if run else None
    claim = claims.GRADCAM_TABLE.get(name, (None, None, None))
    rows.append([name, vs(_acc(p, "test_easy/aligned") if p else None, claim[0]),
                 vs(_acc(p, "test_hard") if p else None, claim[1]),
                 f"{m['spread']['test_hard']['pred']['entropy_nats_mean']:.3f}"
                 + (f" (study: {claim[2]})" if claim[2] else ""),
                 f"{m['spread']['test_easy']['pred']['entropy_nats_mean']:.3f}"])
  lines += _table(["model", "color-matched acc", "color-mismatched acc", "spread, hard",
                   "spread, easy"], rows)
  _fig(lines, workdir, "interpret/figures/gradcam_cases.png",
       "Grad-CAM on the study's cases (red 0, green 0, yellow 3, yellow 8, brown 7)")


def section_sweep(res, lines, workdir):
  att = res.get("attack")
  if not att:
    return
  lines += ["## 4. Targeted PGD: epsilon sweep", "",
            f"Linf PGD, step {att['config']['pgd']['step_size']}, "
            f"{att['config']['pgd']['steps']} steps, random start, targeted cross-entropy; "
            f"{att['num_images']} {att['split']} images, target rule "
            f"`{att['target_rule']['rule']}`. Success = target probability > "
            f"{att['config']['success']['threshold']} (in brackets: argmax == target).", ""]
  names = list(att["models"])
  eps = att["models"][names[0]]["sweep"]["epsilons"]
  rows = []
  for i, e in enumerate(eps):
    row = [e]
    for n in names:
      s = att["models"][n]["sweep"]
      claim = claims.EPS_SWEEP.get(n, {}).get(e)
      row.append(vs(s["success_prob"][i], claim) + f" [{fmt(s['success_argmax'][i])}]")
    rows.append(row)
  lines += _table(["ε"] + names, rows)
  _fig(lines, workdir, "attack/figures/sweep.png", "Attack success against epsilon")


def section_transfer(res, lines, workdir):
  att = res.get("attack")
  if not att:
    return
  t = att["transfer"]
  lines += ["## 5. Transfer", "", "Mean target-class probability of adversarial examples "
            "crafted on the row model (at the study's ε), evaluated on the column model.", ""]
  rows = []
  for i, src in enumerate(t["names"]):
    rows.append([src] + [vs(t["p_target"][i][j], claims.TRANSFER.get((src, dst)))
                         for j, dst in enumerate(t["names"])])
  lines += _table(["crafted on \\ evaluated on"] + t["names"], rows)
  _fig(lines, workdir, "attack/figures/transfer.png", "Transfer matrix")


def section_side_by_side(res, lines, workdir):
  lines += ["## 6. Every model side by side", "",
            "Debiasing methods at the study's λ. aligned / conflicting: test_easy accuracy on "
            "images whose color matches / does not match the label; unbiased-equivalent = "
            "0.1 aligned + 0.9 conflicting.", ""]
  columns = ("train", "test_easy", "test_hard", "test_easy/aligned", "test_easy/conflicting",
             "test_easy/unbiased_equivalent", "test_hard/worst_class")
  rows = [[METHOD_TITLES.get(name, name), point_at(run)["lam"]] +
          [fmt(_acc(point_at(run), c)) for c in columns] for name, run in res["runs"].items()]
  lines += _table(["model", "λ", "train", "test_easy", "test_hard", "aligned", "conflicting",
                   "unbiased-eq.", "worst class (hard)"], rows)
  _fig(lines, workdir, "figures/training_curves.png",
       "Easy (solid) and hard (dashed) test accuracy per epoch")
  links = []
  for name in res["runs"]:
    figs = [f"[{label}](runs/{name}/figures/{f})" for label, f in (
        ("hard-test confusion", "confusion_test_hard.png"), ("color-swap probe", "color_swap.png"))
            if (pathlib.Path(workdir) / "runs" / name / "figures" / f).exists()]
    if figs:
      links.append(f"- {METHOD_TITLES.get(name, name)}: " + ", ".join(figs))
  if links:
    lines += ["Per model (at the λ above): confusion matrix on the hard test set (rows: true "
              "digit) and color-swap probe (each digit painted in each color).", ""] + links + [""]


def section_selection(res, lines):
  if not res["model_selection"]:
    return
  lines += ["## 7. Choosing λ honestly", "",
            "The study chose λ on the hard test set. Chosen instead on a held-out validation "
            "split colored like training (aligned) or uniformly (unbiased), the hard-test "
            "accuracy one would report is:", ""]
  cell = lambda s: f"λ={s['lam']}: {fmt(s['test_hard'])}" if s else "n/a"
  rows = [[name] + [cell(sel.get(crit)) for crit in ("test_hard", "val", "val_unbiased")]
          for name, sel in res["model_selection"].items()]
  lines += _table(["method", "chosen on test_hard (study)", "chosen on val (aligned)",
                   "chosen on val (unbiased)"], rows)


def _null_cell(value, null: dict | None, *, digits=2) -> str:
  """'0.96 (null 0.79, p95 0.84)': a measure beside its random-init null."""
  if value is None:
    return "n/a"
  text = f"{value:.{digits}f}"
  if null and null.get("mean") is not None:
    text += f" (null {null['mean']:.{digits}f}, p95 {null['p95']:.{digits}f})"
  return text


def section_representation(res, lines, workdir):
  models = (res.get("interpret") or {}).get("models")
  if not models:
    return
  lines += ["## 8. Where the models represent and use color, against a null", "",
            "Each measure beside the same number for randomly initialized networks of the same "
            "architecture (null: mean and 95th percentile) and for a hue-blind copy (first "
            "layer's RGB weights averaged). Probes: held-out accuracy of linear probes decoding "
            "the stroke color and the digit from a layer (chance 0.1). Invariance ratio: "
            "E‖h(x) − h(x_cf)‖² / E‖h(x) − h(x′)‖², x_cf the same digit recolored with a palette "
            "color of equal luminance, x′ another digit in the same color (0: blind to color). "
            "A channel is called color- or shape-selective only beyond the null's range. "
            "Recolor: share of predictions that change when the input is recolored.", ""]
  rows = []
  for name, m in models.items():
    rep = m.get("representation")
    if not rep:
      continue
    swap, swap_null = rep["input_swap"], rep["input_swap_null"]
    for layer, r in rep["layers"].items():
      fr = r["invariance"]["fractions"]
      rows.append([name, layer,
                   _null_cell(r["probe"]["color"], r["probe_null"]["random"]["color"]),
                   _null_cell(r["probe"]["digit"], r["probe_null"]["random"]["digit"]),
                   _null_cell(r["invariance"]["ratio"],
                              r["invariance_null"]["random"]["ratio"]),
                   f"{fmt(fr.get('color'))} / {fmt(fr.get('shape'))}",
                   _null_cell(swap["changed"], swap_null["random"]["changed"])
                   if layer == next(iter(rep["layers"])) else ""])
  lines += _table(["model", "layer", "probe: color", "probe: digit", "invariance ratio",
                   "channels color / shape %", "recolor changes prediction"], rows)
  _fig(lines, workdir, "interpret/figures/representation.png",
       "Probes and invariance per layer, each model beside its null")
  _fig(lines, workdir, "interpret/figures/invariance_channels.png",
       "Per-channel invariance ratios against the null's range")
  for name in models:
    _fig(lines, workdir, f"interpret/figures/featviz_{name}_conv0.png",
         f"Feature visualization, {name}, conv0")


def section_attack_anatomy(res, lines, workdir):
  att = res.get("attack")
  if not att:
    return
  _heading(lines, "9. Minimal epsilon and perturbation anatomy, against a null",
           "Minimal ε: per image, the smallest Linf budget at which targeted PGD succeeds "
           "(bisection; scale-free). Color-shift share: the energy of δ explained by the stroke "
           "mask times one RGB vector per image, beside random-sign perturbations of the same "
           "budget clipped the same way (null). The study says the cheater's perturbations "
           "are a color shift of the stroke and the debiased model's have spatial structure.")
  rows = []
  for name, m in att["models"].items():
    me, an = m["min_eps"], m["anatomy"]
    rows.append([name, "n/a" if me["median"] is None else f"{me['median']:.2f}",
                 fmt(me["found_within_eps_max"]),
                 f"{an['color_shift_share']:.3f} (null {an['color_shift_share_null']:.3f})",
                 fmt(an["color_shift_images_above_null_p95"]),
                 f"{an['stroke_energy_share']:.3f} (null {an['stroke_energy_share_null']:.3f})",
                 f"{an['mean_l2']:.1f}"])
  lines += _table(["model", "median minimal ε", "found within ε_max", "color-shift share",
                   "images above null p95 %", "energy on the stroke", "mean L2 of δ"], rows)
  _fig(lines, workdir, "attack/figures/example_perturbation.png",
       "The study's 7 -> 3 example: image, perturbation, adversarial image, per model")
  _fig(lines, workdir, "attack/figures/mean_abs_delta.png", "Mean |δ| per model")


def _budget(config: dict) -> str:
  """'20000 digits, 3-4 epochs': a study's training budget, from its config dict."""
  epochs = sorted({r["train"]["epochs"] for r in config["runs"].values()})
  span = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
  return (f"{config['data']['train_size']} digits, {span} epochs, {config['num_seeds']} "
          f"seed(s)")


def profile_differences(res, other: dict) -> list:
  """The findings whose verdicts differ from another study's (matched by claim)."""
  theirs = {f["claim"]: f for f in other.get("findings") or []}
  return [{"claim": f["claim"], "here": f["holds"], "there": theirs[f["claim"]]["holds"],
           "measured_here": f["measured"], "measured_there": theirs[f["claim"]]["measured"]}
          for f in res["findings"] if f["claim"] in theirs
          and f["holds"] != theirs[f["claim"]]["holds"]]


def section_profiles(res, lines):
  other = res.get("compared_with")
  if not other:
    return
  diffs = other["differences"]
  lines += ["## Against the other profile", "",
            f"Compared with `{other['path']}`: this study trains on {_budget(res['config'])}; "
            f"that one on {other['budget']}. A verdict that differs is the training budget's "
            "doing or the seeds': " + (f"{len(diffs)} of {len(res['findings'])} differ."
                                      if diffs else "every verdict is the same."), ""]
  if diffs:
    word = {True: "holds", False: "does not hold", None: "not resolved"}
    lines += _table(["claim", "here", "there"],
                    [[d["claim"], f"{word[d['here']]}: {d['measured_here']}",
                      f"{word[d['there']]}: {d['measured_there']}"] for d in diffs])


def section_made(res, lines, study):
  env = res["environment"]
  lines += ["## How this was made", "",
            f"- config: `{study.to_dict().get('only') or 'all stages'}`; seeds "
            f"{study.seed}..{study.seed + study.num_seeds - 1} ({study.num_seeds}); data: "
            f"{study.data.train_size} train digits, rho {study.data.rho_train}, coloring "
            f"{study.data.coloring}; the full config is in `config.json`.",
            f"- jax {env['jax']}, flax {env['flax']}, optax {env['optax']}, Python "
            f"{env['python']}, {env['device']} x{env['device_count']}, {env['platform']}.",
            f"- generated {res['generated']}.", ""]
  rows = [[s, f"{t['seconds']:.1f}"] for s, t in res["stages"].items()]
  total = sum(t["seconds"] for t in res["stages"].values())
  lines += _table(["stage", "wall time (s)"], rows + [["total", f"{total:.1f}"]])


def _verdict(f) -> str:
  word = {True: "holds", False: "**does not hold**"}.get(f["holds"])
  if word is None:
    return "not measured" if f["strength"] == "not measured" else f"not resolved ({f['strength']})"
  return f"{word} ({f['strength']})"


def section_findings(res, lines):
  lines += ["## Findings", "",
            "The study's qualitative claims, each tested between runs that differ in the method "
            "alone (`name@0`: the method's own λ = 0 grid point, with its optimizer, data, epochs "
            "and seeds). With several seeds a claim holds only when the paired difference lies "
            "beyond 2 standard errors; with one seed the verdict is indicative.", ""]
  lines += _table(["claim", "tested as", "runs compared", "measured", "verdict"],
                  [[f["claim"], f["rule"], ", ".join(f["runs"]), f["measured"], _verdict(f)]
                   for f in res["findings"]])


def render(res, study, workdir) -> str:
  lines = ["# Colored-MNIST shortcut study: our measurements beside the study's claims", "",
           "Each cell: our measurement, and in brackets what the study reports. Accuracies in %.",
           ""]
  section_findings(res, lines)
  for split in ("train", "test_hard"):
    _fig(lines, workdir, f"figures/samples_{split}.png", f"Samples of {split}")
  others = [f"[{split}](figures/samples_{split}.png)" for split in ("test_easy", "val",
                                                                    "val_unbiased")
            if (pathlib.Path(workdir) / "figures" / f"samples_{split}.png").exists()]
  if others:
    lines += ["Sample grids of the other splits: " + ", ".join(others) + ".", ""]
  section_cheater(res, lines)
  _fig(lines, workdir, "runs/cheater/figures/color_swap.png", "Color-swap probe, cheater")
  section_grid(res, lines, "gradient_penalty", "2a. Input-gradient penalty, λ grid",
               {claims.GRADIENT_PENALTY["lam"]: (claims.GRADIENT_PENALTY["train"],
                                                 claims.GRADIENT_PENALTY["test_hard"])})
  section_grid(res, lines, "counterfactual", "2b. Counterfactual consistency, λ grid",
               claims.COUNTERFACTUAL)
  section_grid(res, lines, "color_gradient_penalty", "2c. Color-gradient penalty (new), λ grid",
               {})
  section_gradcam(res, lines, workdir)
  section_sweep(res, lines, workdir)
  section_transfer(res, lines, workdir)
  section_side_by_side(res, lines, workdir)
  section_selection(res, lines)
  section_representation(res, lines, workdir)
  section_attack_anatomy(res, lines, workdir)
  section_profiles(res, lines)
  section_made(res, lines, study)
  return "\n".join(lines) + "\n"


def curves_figure(study, res, workdir):
  """Training curves of the replica that stands for each method."""
  curves = {name: eval_run.read_curves(layout.run_dir(workdir, name),
                                       replica=layout.selected_replica(study, name))
            for name in res["runs"]}
  return eval_plots.training_curves_figure(curves)


def write_report(study, workdir) -> dict:
  """Writes DIR/results.json and DIR/report.md (and the cross-run figures)."""
  workdir = pathlib.Path(workdir)
  res = collect(study, workdir)
  res["findings"] = findings(res)
  other = io.read_json(study.compare_with) if study.compare_with else None
  if study.compare_with and other is None:
    raise FileNotFoundError(f"config.compare_with={study.compare_with!r} does not exist; give "
                            "another study's results.json, or '' to compare with none.")
  if other is not None:
    res["compared_with"] = {"path": study.compare_with, "budget": _budget(other["config"]),
                            "differences": profile_differences(res, other)}
  if res["runs"]:
    plots.save_figure(curves_figure(study, res, workdir),
                      workdir / "figures" / "training_curves.png")
  cheater_swap = layout.run_dir(workdir, "cheater") / "figures" / "color_swap.png"
  if cheater_swap.exists():
    shutil.copy(cheater_swap, workdir / "figures" / "color_swap_cheater.png")
  io.write_json(workdir / "results.json", res, indent=1)
  io.write_text(workdir / "report.md", render(res, study, workdir))
  return res
