"""The study report's frame, read as a paper: what is reproduced, a summary, the setup, where we
disagree with the study, the limitations and the appendix. sections.py writes the results in
between; every sentence here is built from the collected record (collect.py) and its findings.
"""

import pathlib

from ccmnist.report import claims
from ccmnist.report import findings as findings_lib
from ccmnist.report import markdown
from ccmnist.report import verdicts

fmt, table, figure = markdown.fmt, markdown.table, markdown.figure
# A profile's training budget ('20000 digits, 2-12 epochs, 1 seed'), as findings.py words it.
_budget = lambda res: findings_lib.budget(res["config"]) if res.get("config") else "n/a"
# The findings the summary quotes, in this order (findings.finding's `key`), at most four.
SUMMARY_KEYS = ("consistency_control", "penalty", "step_size", "attack", "shortcut",
                "consistency", "study_pair")


def verdict_text(f) -> str:
  """A finding's verdict in words, with its strength."""
  word = {True: "holds", False: "**does not hold**"}.get(f["holds"])
  if word is None:
    if f["strength"] == "not measured" or any(
        w in f["strength"] for w in ("not resolved", "untestable")):
      return f["strength"]
    return f"not resolved ({f['strength']})"
  return f"{word} ({f['strength']})"


def title(res) -> list:
  """The title and the paragraph naming the study this report reproduces."""
  s = claims.STUDY
  return [f"# Reproducing \"{s['title']}\"", "",
          f"This report repeats the experiments of *{s['title']}* ({s['kind']}, {s['author']}, "
          f"{s['date']}; \"the study\" below) on colored MNIST and tests each of its "
          "qualitative claims between runs that differ in one thing. Cells read \"ours (study: "
          "X)\" where the study reports a number; accuracies are in %, mean ± std over the "
          f"seeds ({_seed_words(res)}).", ""]


def _seed_words(res) -> str:
  config = res.get("config") or {}
  n, s0 = config.get("num_seeds", 1), config.get("seed", 0)
  return f"{n} seeds: {', '.join(str(s0 + i) for i in range(n))}" if n > 1 else f"seed {s0}"


def section_summary(res, lines):
  """Five lines: what was tested and how it came out, then the central findings."""
  found = res.get("findings") or []
  if not found:
    return
  counts = {}
  for f in found:
    w = findings_lib.verdict_word(f)
    word = {"holds": "hold", "does not hold": "do not hold"}.get(w, w)  # "5 hold"
    counts[word] = counts.get(word, 0) + 1
  tally = ", ".join(f"{n} {w}" for w, n in counts.items())
  lines += ["## Summary", "",
            f"- {len(found)} claims tested at the {verdicts.LEVEL:g} level with Holm's correction "
            f"({_budget(res)}): {tally}."]
  by_key = {f.get("key"): f for f in found if f.get("key")}
  for key in [k for k in SUMMARY_KEYS if k in by_key][:4]:
    f = by_key[key]
    lines.append(f"- {f['claim']}: {verdict_text(f)}; {f['measured']}.")
  lines.append("")


def _optimizer(optim: dict) -> str:
  """'SGD lr 0.01', 'SGD lr 0.01 momentum 0.9', 'Adam lr 0.001' (and an lr grid when set)."""
  name = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}.get(optim["name"], optim["name"])
  lrs = optim.get("lr_grid") or ()
  text = f"{name} lr " + ("/".join(f"{x:g}" for x in lrs) if lrs else f"{optim['lr']:g}")
  if optim.get("momentum"):
    text += f" momentum {optim['momentum']:g}"
  if optim.get("weight_decay"):
    text += f" L2 {optim['weight_decay']:g}"
  return text


def run_title(config: dict, name: str) -> str:
  """'cheater (ERM, SGD lr 0.01)': a run named with its method and optimizer, as configured."""
  run = ((config or {}).get("runs") or {}).get(name)
  if not run:
    return name
  return f"{name} ({run['loss']['name']}, {_optimizer(run['optim'])})"


def section_setup(res, lines):
  """Data, models, per-run optimizer / epochs / λ grid, seeds, and what uses seed 0 alone."""
  config = res.get("config")
  if not config:
    return
  d = config["data"]
  lines += ["## Setup", "",
            f"**Data.** {d['train_size']} MNIST training digits ({d['val_size']} more held out "
            f"as `val`, colored like training, and {d['val_unbiased_size']} as `val_unbiased`, "
            f"colored uniformly), the stroke painted in the digit's own palette color with "
            f"probability {d['rho_train']:g} and in another color otherwise ({d['coloring']} "
            f"coloring, Gaussian pixel noise σ = {d['noise_sigma']:g} of the range unless a run "
            f"says otherwise). `test_easy`: {d['test_size']} test digits colored the same way "
            f"(ρ = {d['rho_test_easy']:g}); `test_hard`: the same digits never in their own "
            f"color (ρ = {d['rho_test_hard']:g}). The color draw is fixed (data seed "
            f"{d['seed']}): the spread over seeds is the training seed's alone.", "",
            "**Runs.** Each run trains its seeds (and λ grid points) as replicas of one program; "
            "a λ grid's points share seeds, so comparisons along it are paired.", ""]
  rows = []
  for name in config.get("train_runs") or config["runs"]:
    r = config["runs"][name]
    grid = r["loss"].get("lam_grid") or [r["loss"]["lam"]]
    rows.append([name, r["model"]["name"], r["loss"]["name"], _optimizer(r["optim"]),
                 r["train"]["batch_size"], r["train"]["epochs"],
                 ", ".join(f"{x:g}" for x in grid),
                 ", ".join(f"{k} {v}" for k, v in r["data_overrides"].items()) or "—"])
  lines += table(["run", "model", "loss", "optimizer", "batch", "epochs", "λ grid",
                  "data differs in"], rows)
  lines += [f"**Seeds.** Every run: {_seed_words(res)}. {_downstream_words(res)} Figures show "
            "seed 0 (their captions say so).", ""]


def _downstream_words(res) -> str:
  """Which seeds the interpret and attack stages analyse, from their own records."""
  words = []
  for stage in ("interpret", "attack"):
    rec = res.get(stage)
    if not rec:
      continue
    seeds = rec.get("seeds")
    seeds = seeds or [0]
    words.append(f"The {stage} stage analyses " + ("seeds " if len(seeds) > 1 else "seed ")
                 + ", ".join(map(str, seeds)) + ".")
  return " ".join(words)


def section_disagreements(res, lines):
  """Where our measurements and the study's part, each with the measurement that explains it."""
  items = [t for t in (_consistency_gap(res), _penalty_gap(res), _attack_gap(res)) if t]
  if not items:
    return
  lines += ["## Where we disagree with the study, and why", ""]
  lines += [f"- {t}" for t in items] + [""]


def _point(res, name, lam=None):
  run = (res.get("runs") or {}).get(name)
  if not run:
    return None
  lam = run["downstream_lam"] if lam is None else lam
  return next((p for p in run["grid"] if p["lam"] == lam), None)


def _consistency_gap(res) -> str | None:
  p = _point(res, "counterfactual")
  if not p or "test_hard" not in p["accuracy"]:
    return None
  claim = claims.COUNTERFACTUAL.get(p["lam"])
  if claim is None:
    return None
  return (f"Counterfactual consistency at the study's λ = {p['lam']:g} reaches "
          f"{fmt(p['accuracy']['test_hard'])}% on the hard set against the study's "
          f"{100 * claim[1]:.1f}%. The study names no optimizer for this run; ours is "
          f"{_optimizer(res['config']['runs']['counterfactual']['optim'])} "
          f"({res['config']['runs']['counterfactual']['train']['epochs']} epochs), so the gap "
          "may be the optimizer's and the budget's as much as the method's.")


def _penalty_gap(res) -> str | None:
  lam = claims.GRADIENT_PENALTY["lam"]
  parts = []
  for name, setting in (("gradient_penalty_study", "at the study's settings"),
                        ("gradient_penalty", "trained to fit")):
    at, zero = _point(res, name, lam), _point(res, name, 0.0)
    if not at or not zero or "test_hard" not in at["accuracy"]:
      continue
    ratio = at.get("penalty_ratio")
    parts.append(f"{setting} ({name}) {fmt(at['accuracy']['test_hard'])}% at λ = {lam:g} "
                 f"against {fmt(zero['accuracy']['test_hard'])}% at λ = 0"
                 + (f", the penalty {ratio['mean']:.2g} of the cross-entropy" if ratio else ""))
  if not parts:
    return None
  return (f"The study reports {100 * claims.GRADIENT_PENALTY['test_hard']:.1f}% on the hard set "
          f"for the input-gradient penalty at λ = {lam:g}. Ours: " + "; ".join(parts)
          + ". Section 2a gives every λ and the verdicts.")


def _attack_gap(res) -> str | None:
  """The study's attack claim beside ours: the means over the attacked seeds, as the findings
  table tests them."""
  eps = claims.PGD_EPS
  got = {m: findings_lib.attack_values(res, m, eps) for m in ("cheater", "counterfactual")}
  if not all(got.values()):
    return None
  study = claims.EPS_SWEEP
  seeds = len(got["cheater"]["argmax"])
  over = f"mean of {seeds} seeds" if seeds > 1 else "1 seed"
  text = (f"The study finds the cheater easier to attack than the consistency model (targeted "
          f"PGD, ε = {eps:g}, success = target probability > 0.9: "
          f"{100 * study['cheater'][eps]:.0f}% vs {100 * study['counterfactual'][eps]:.0f}%). "
          f"Ours ({over}): {_mean_pct(got['cheater']['prob'])} vs "
          f"{_mean_pct(got['counterfactual']['prob'])} on that criterion and "
          f"{_mean_pct(got['cheater']['argmax'])} vs {_mean_pct(got['counterfactual']['argmax'])}"
          " when success is the target becoming the argmax.")
  if all(g["confidence"] for g in got.values()):
    text += (" On the clean attacked images the mean max-softmax is "
             + " and ".join(f"{_mean_pct(g['confidence'])} ({m})" for m, g in got.items())
             + ", and the share of them predicted with p > 0.9 "
             + " and ".join(_mean_pct(g["confident_share"]) for g in got.values())
             + ": the two criteria can rank the models differently, so the report judges the "
             "scale-free ones (argmax success, minimal ε).")
  return text


def _mean_pct(value) -> str:
  values = value if isinstance(value, list) else [value]
  return f"{100 * sum(values) / len(values):.1f}%"


def section_limitations(res, lines):
  """What the statistics, the seeds and the settings can and cannot carry."""
  config = res.get("config") or {}
  n = config.get("num_seeds", 1)
  found = res.get("findings") or []
  family = max((f.get("family") or 0 for f in found), default=0)
  stats_line = (f"With {n} seeds a paired t-test has {n - 1} degrees of freedom; the findings "
                f"table corrects for its {family} comparisons (Holm). \"Not resolved\" is no "
                "evidence that two runs are alike." if n > 1 else
                "With one seed there is no test: every verdict is indicative, and a difference "
                "within the test set's sampling noise is no finding.")
  lines += ["## Limitations", "",
            f"- **Statistics.** {stats_line}",
            "- **Seeds.** Every seed sees the same color draw, so the spread leaves out the "
            "data's variance; figures show seed 0.",
            f"- **Settings.** This profile trains on {_budget(res)}; the study on "
            f"{claims.STUDY['budget']}. Runs whose optimizer or budget differ from the study's "
            "are named in the setup table, and a verdict may be the budget's doing (the full "
            "profile is the study's budget).",
            "- **Scope.** One architecture family (the study's CheaterCNN) on one synthetic "
            "bias; the claims tested are the study's, and a claim that holds here says nothing "
            "about natural data.", ""]


def section_appendix(res, lines, workdir):
  """Figures a reader consults, not reads: samples, feature visualizations, perturbation maps,
  per-model confusion and color-swap figures."""
  workdir = pathlib.Path(workdir)
  body = []
  for split in ("train", "test_easy", "test_hard", "val", "val_unbiased"):
    body += figure(workdir, f"figures/samples_{split}.png", f"Samples of {split}")
  for name in ((res.get("interpret") or {}).get("models") or {}):
    body += figure(workdir, f"interpret/figures/featviz_{name}_conv0.png",
                   f"Feature visualization, {name}, conv0 (seed 0)")
  body += figure(workdir, "attack/figures/example_perturbation.png",
                 "The study's 7 -> 3 example: image, perturbation, adversarial image, per model "
                 "(seed 0)")
  body += figure(workdir, "attack/figures/mean_abs_delta.png", "Mean |δ| per model (seed 0)")
  links = []
  for name in res.get("runs") or {}:
    figs = [f"[{label}](runs/{name}/figures/{f})" for label, f in (
        ("hard-test confusion", "confusion_test_hard.png"), ("color-swap probe", "color_swap.png"))
            if (workdir / "runs" / name / "figures" / f).exists()]
    if figs:
      links.append(f"- {name}: " + ", ".join(figs))
  if links:
    body += ["Per model, seed 0 at the λ the study chose: confusion matrix on the hard test set "
             "(rows: true digit) and color-swap probe (each digit painted in each color).", ""]
    body += links + [""]
  if body:
    lines += ["## Appendix: figures", ""] + body
