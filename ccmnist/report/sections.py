"""The study's report.md, section by section, from the collected records and their findings.

Every cell that the study also reports reads "ours (study: X)". Numbers are mean +- std over
seeds when the study ran more than one.
"""


from ccmnist.report import attack_suite
from ccmnist.report import claims
from ccmnist.report import collect
from ccmnist.report import findings as findings_lib
from ccmnist.report import markdown
from ccmnist.report import paper
from ccmnist.report import verdicts

fmt, vs, table, figure = markdown.fmt, markdown.vs, markdown.table, markdown.figure
point_at, budget = collect.point_at, findings_lib.budget


def _acc(point, split):
  """The collected accuracy of a grid point on `split`, or None."""
  return point["accuracy"].get(split)


def section_cheater(res, lines):
  """1: the cheater's accuracies and color-swap probe beside the study's."""
  run = res["runs"].get("cheater")
  if not run:
    return
  p = point_at(run)
  lines += ["## 1. The cheater learns the shortcut", ""]
  lines += table(["", "ours (study claims)"], [
     ["train accuracy (95% aligned)", vs(_acc(p, "train"), claims.CHEATER["train"])],
     ["test_easy accuracy (95% aligned)", fmt(_acc(p, "test_easy"))],
     ["test_hard accuracy (never aligned)", vs(_acc(p, "test_hard"), claims.CHEATER["test_hard"])],
     ["color-swap probe: brown 3s called 8", vs(p.get("color_swap_3_brown_pred_8"),
                                                claims.COLOR_SWAP_3_BROWN)],
 ])


def section_grids(res, lines, title, runs):
  """One table for the λ grids of several runs, each point beside the study's (runs: [(name,
  {λ: (train, hard)})]). A λ = 0 point with the same per-seed accuracies as one already shown
  (the same model trained twice: every grid starts at the plain-ERM control) is shown once."""
  rows, seen = [], {}
  for name, claim_rows in runs:
    run = res["runs"].get(name)
    if not run:
      continue
    for p in run["grid"]:
      ident = tuple(tuple((p["accuracy"].get(k) or {}).get("values") or ())
                    for k in ("train", "test_hard"))
      if p["lam"] == 0 and ident in seen and any(ident):
        seen[ident].append(name)
        continue
      claim = claim_rows.get(p["lam"], (None, None))
      row = [name, p["lam"], vs(_acc(p, "train"), claim[0]), fmt(_acc(p, "test_easy")),
             vs(_acc(p, "test_hard"), claim[1]), fmt(_acc(p, "val")),
             fmt(_acc(p, "val_unbiased"))]
      if p["lam"] == 0:
        seen[ident] = row[:1]
        row[0] = seen[ident]  # Filled in below with every run sharing it.
      rows.append(row)
  if not rows:
    return
  for row in rows:
    if isinstance(row[0], list):
      row[0] = " = ".join(f"{n}@0" for n in row[0])
  lines += [f"## {title}", ""]
  lines += table(["run", "λ", "train", "test_easy", "test_hard", "val (aligned)",
                  "val (unbiased)"], rows)


def section_step_size(res, lines):
  """What moves plain ERM's hard-set accuracy: the lr grid, the long run and the adaptive
  controls, each row with its final training loss (findings_lib.step_size_rows tests them)."""
  runs = res["runs"]
  lr_run, long_run = findings_lib.LR_RUN, findings_lib.LONG_RUN
  if lr_run not in runs and long_run not in runs:
    return
  best, crit, _ = findings_lib.best_lr(res)
  optim = lambda name: ((res.get("config") or {}).get("runs") or {}).get(name, {}).get("optim")

  def loss(point):
    curves = point.get("train_loss")
    return f"{sum(c[-1] for c in curves) / len(curves):.4f}" if curves else "n/a"

  def row(name, lr, point, note=""):
    return [name + note, "n/a" if lr is None else f"{lr:g}", runs[name].get("epochs"),
            fmt(_acc(point, "train")), fmt(_acc(point, "test_hard")),
            fmt(_acc(point, "val_unbiased")), loss(point)]

  rows = [row(lr_run, p["lr"], p, f" (best on {crit})" if p["lr"] == best else "")
          for p in (runs.get(lr_run) or {}).get("grid", ()) if "lr" in p]
  for name in (long_run, "erm_adam", "erm_momentum"):
    if name in runs:
      o = optim(name) or {}
      kind = {"adam": " (Adam)"}.get(o.get("name"), " (momentum)" if o.get("momentum") else "")
      rows.append(row(name, o.get("lr"), point_at(runs[name]), kind))
  lines += markdown.heading(
      "1b. Step size, training length and adaptivity (plain ERM)",
      f"`{lr_run}`: the cheater's run (plain SGD, its data, batch and epochs) at each learning "
      "rate of a grid, trained as replicas of one program with the same seeds. "
      f"`{long_run}`: the cheater at the study's lr 1e-3 for longer. The Adam and momentum "
      "controls train the cheater's epochs. Accuracies: mean ± std over seeds; training loss: "
      "the mean over the last epoch's steps, mean over seeds. The findings above test these "
      "rows (step size, training length, whether the long run's loss still falls, "
      "adaptivity).")
  lines += table(["run", "lr", "epochs", "train", "test_hard", "val (unbiased)",
                  "final train loss"], rows)


# λ·penalty / CE from which the penalty weighs in the objective beside the cross-entropy.
HEAVY_RATIO = 0.3


def _penalty_table(run) -> list:
  """A penalty run's λ grid: λ, train, test_hard, λ·penalty / CE (means over seeds)."""
  def ratio(p):
    r = (p.get("penalty_ratio") or {}).get("mean")
    return "n/a" if r is None else f"{r:.2g}"
  return table(["λ", "train", "test_hard", "λ·penalty / CE"],
               [[f"{p['lam']:g}", fmt(_acc(p, "train")), fmt(_acc(p, "test_hard")), ratio(p)]
                for p in run["grid"]])


def _setting(res, name) -> str:
  """'adam lr 0.001, 4 epochs': a run's optimizer and budget, from the study's config."""
  r = (((res.get("config") or {}).get("runs") or {}).get(name)) or {}
  if not r:
    return "settings not recorded"
  o = r["optim"]
  return (f"{o['name']}{' momentum ' + format(o['momentum'], 'g') if o.get('momentum') else ''}"
          f" lr {o['lr']:g}, {r['train']['epochs']} epochs")


def _penalty_why(run) -> str:
  """Why the study's hard-set accuracy does not reproduce, from what was measured: the ratio
  at the study's λ, the hard-set change it brings, and what the λ that weigh do."""
  lam, study = claims.GRADIENT_PENALTY["lam"], claims.GRADIENT_PENALTY["test_hard"]
  at, zero = (next((p for p in run["grid"] if p["lam"] == g), None) for g in (lam, 0.0))
  ratio = lambda p: (p.get("penalty_ratio") or {}).get("mean")
  hard = lambda p: (_acc(p, "test_hard") or {}).get("mean")
  if at is None or zero is None or ratio(at) is None or None in (hard(at), hard(zero)):
    return (f"The grid lacks the study's λ {lam:g}, its λ = 0 control or the recorded "
            "penalty, so the study's result is not checked here.")
  text = (f"Why the study's {100 * study:.1f}% on the hard set does not reproduce: the "
          "penalty is a mean over every pixel and channel of the squared input gradient, and at "
          f"the study's λ {lam:g} it weighs {ratio(at):.1e} of the cross-entropy, so training "
          "minimizes the cross-entropy all but alone; the hard set moves "
          f"{100 * (hard(at) - hard(zero)):+.1f} points from λ = 0 "
          f"({fmt(_acc(zero, 'test_hard'))} to {fmt(_acc(at, 'test_hard'))}).")
  heavy = [p for p in run["grid"] if ratio(p) is not None and ratio(p) >= HEAVY_RATIO]
  if heavy:
    text += (f" Where the penalty weighs at least {HEAVY_RATIO:g} of the cross-entropy (λ "
             + ", ".join(f"{p['lam']:g}" for p in heavy) + "), test_hard is "
             + ", ".join(fmt(_acc(p, "test_hard")) for p in heavy) + ".")
  else:
    text += f" No λ of the grid brings the penalty to {HEAVY_RATIO:g} of the cross-entropy."
  return text


def section_penalty(res, lines):
  """2a: the input-gradient penalty per λ (train, test_hard, λ·penalty / CE) trained to fit and,
  when the study runs it, at the study's settings; its verdicts (untestable where the λ = 0
  control underfits) and why the study's hard-set accuracy does not reproduce."""
  run = res["runs"].get("gradient_penalty")
  if not run:
    return
  lines += markdown.heading(
      "2a. Input-gradient penalty, λ grid",
      "The study's penalty, CE + λ · mean((∂ logit_y / ∂x)²) over every pixel and channel of "
      f"[0, 1] inputs, trained to fit ({_setting(res, 'gradient_penalty')}). λ·penalty / CE: "
      "the penalty's weight beside the cross-entropy over the last epoch (0 at λ = 0).")
  lines += _penalty_table(run)
  study_run = res["runs"].get("gradient_penalty_study")
  if study_run:
    lines += [f"At the study's own settings ({_setting(res, 'gradient_penalty_study')}), "
              f"beside the study's λ {claims.GRADIENT_PENALTY['lam']:g}: train "
              f"{fmt(claims.GRADIENT_PENALTY['train'])}, test_hard "
              f"{fmt(claims.GRADIENT_PENALTY['test_hard'])}.", ""] + _penalty_table(study_run)
  found = [f for f in res.get("findings") or []
           if f["claim"].startswith("The input-gradient penalty")]
  lines += [f"- {f['claim']}: {paper.verdict_text(f)}." for f in found] + ([""] if found else [])
  lines += [_penalty_why(run), ""]


def section_gradcam(res, lines, workdir):
  """3: where the models look (Grad-CAM spread) beside their accuracies."""
  interp = res.get("interpret")
  if not interp:
    return
  lines += markdown.heading(
      "3. Grad-CAM: where the models look",
      "Activation spread = entropy (nats) of the normalized Grad-CAM map of the predicted class, "
      "mean over the hard test set (max log 784 = 6.66: uniform).")
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
  lines += table(["model", "color-matched acc", "color-mismatched acc", "spread, hard",
                  "spread, easy"], rows)
  lines += ["Color-matched / mismatched: test_easy's aligned images / test_hard. The study's "
            "color-matched figure for the cheater is its training accuracy, the nearest it "
            "reports.", ""]
  lines += figure(workdir, "interpret/figures/gradcam_cases.png",
                 "Grad-CAM on the study's cases (red 0, green 0, yellow 3, yellow 8, brown 7)")


def section_sweep(res, lines, workdir):
  """4: targeted PGD success per epsilon, per attacked model."""
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
  lines += table(["ε"] + names, rows)
  lines += figure(workdir, "attack/figures/sweep.png", "Attack success against epsilon")


def section_transfer(res, lines, workdir):
  """5: target probability of adversarial examples moved between models."""
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
  lines += table(["crafted on \\ evaluated on"] + t["names"], rows)
  lines += figure(workdir, "attack/figures/transfer.png", "Transfer matrix")


def section_side_by_side(res, lines, workdir):
  """6: every trained model's accuracies at the study's λ, with figure links."""
  lines += ["## 6. Every model side by side", "",
            "Debiasing methods at the study's λ. aligned / conflicting: test_easy accuracy on "
            "images whose color matches / does not match the label; unbiased-equivalent = "
            "0.1 aligned + 0.9 conflicting.", ""]
  columns = ("train", "test_easy", "test_hard", "test_easy/aligned", "test_easy/conflicting",
             "test_easy/unbiased_equivalent", "test_hard/worst_class")
  rows = [[paper.run_title(res.get('config'), name), point_at(run)["lam"]] +
          [fmt(_acc(point_at(run), c)) for c in columns] for name, run in res["runs"].items()]
  lines += table(["model", "λ", "train", "test_easy", "test_hard", "aligned", "conflicting",
                  "unbiased-eq.", "worst class (hard)"], rows)
  lines += figure(workdir, "figures/training_curves.png",
                 "Test accuracy per epoch on test_easy (left) and test_hard (right), seed 0 at "
                 "the study's λ; dotted: chance; a run that retraces an earlier one lies under "
                 "it, its markers showing; runs equal throughout share a line (a = b)")


def section_selection(res, lines):
  """7: the λ each held-out criterion would choose, and what it then reports."""
  if not res["model_selection"]:
    return
  lines += ["## 7. Choosing λ honestly", "",
            "The study chose λ on the hard test set. Chosen instead on a held-out validation "
            "split colored like training (aligned) or uniformly (unbiased), the hard-test "
            "accuracy one would report is:", ""]
  cell = lambda s: f"λ={s['lam']}: {fmt(s['test_hard'])}" if s else "n/a"
  rows = [[name] + [cell(sel.get(crit)) for crit in ("test_hard", "val", "val_unbiased")]
          for name, sel in res["model_selection"].items()]
  lines += table(["method", "chosen on test_hard (study)", "chosen on val (aligned)",
                  "chosen on val (unbiased)"], rows)


def _null_cell(value, null: dict | None, *, digits=2) -> str:
  """'0.96 (null 0.79, p95 0.84)': a measure beside its random-init null."""
  if value is None:
    return "n/a"
  text = f"{value:.{digits}f}"
  if null and null.get("mean") is not None:
    text += f" (null {null['mean']:.{digits}f}, p95 {null['p95']:.{digits}f})"
  return text


POSITIVE_CONTROL = "grayscale"  # The study run the shape call is tested on.


def _selectivity(layer_result) -> dict:
  """{'color', 'shape', 'neither', 'channels'}: the layer's channels per call."""
  c = layer_result.get("selectivity")
  if c is None:  # An interpret.json from before the calls were counted: from the classes.
    classes = layer_result["invariance"]["classes"]
    c = {k: sum(x == k for x in classes) for k in ("color", "shape")}
    c.update(neither=len(classes) - c["color"] - c["shape"], channels=len(classes))
  return c


def _selectivity_cell(layer_result) -> str:
  """'12 / 0 / 4': the layer's channels called color / shape / neither."""
  c = _selectivity(layer_result)
  return f"{c['color']} / {c['shape']} / {c['neither']}"


def _positive_control(models) -> list:
  """The sentence on whether the shape call passed its positive control."""
  rep = (models.get(POSITIVE_CONTROL) or {}).get("representation")
  if not rep:
    return ["No positive control for the shape call was run (a model trained on grey digits, "
            f"study run `{POSITIVE_CONTROL}`): a shape count of 0 says nothing here.", ""]
  counts = {layer: _selectivity(r) for layer, r in rep["layers"].items()}
  blind = [layer for layer, c in counts.items() if not c["shape"]]
  called = ", ".join(f"{layer} {c['shape']} of {c['channels']}" for layer, c in counts.items())
  if blind:
    return [f"**Positive control failed at {', '.join(blind)}:** the model trained on grey "
            f"digits has no channel called shape-selective there ({called}), so at "
            f"{'that layer' if len(blind) == 1 else 'those layers'} these measures cannot "
            "detect shape, and a shape count of 0 for another model says nothing.", ""]
  return [f"**Positive control passed:** the model trained on grey digits has channels called "
          f"shape-selective in every layer ({called}), so the measures can say \"shape\"; a "
          "layer of another model with none is a finding, not a blind spot.", ""]


def section_representation(res, lines, workdir):
  """8: probes, invariance and recoloring of each layer, beside a null; the channels called
  color, shape or neither, with the grayscale run as the positive control of 'shape'."""
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
            "Recolor: share of predictions that change when the input is recolored. Every model "
            "is measured on the same colored stimuli, the one trained on grey digits too.", ""]
  rows = []
  label = lambda name: (f"{name} (positive control for shape)" if name == POSITIVE_CONTROL
                        else name)
  for name, m in models.items():
    rep = m.get("representation")
    if not rep:
      continue
    swap, swap_null = rep["input_swap"], rep["input_swap_null"]
    for layer, r in rep["layers"].items():
      rows.append([label(name), layer,
                   _null_cell(r["probe"]["color"], r["probe_null"]["random"]["color"]),
                   _null_cell(r["probe"]["digit"], r["probe_null"]["random"]["digit"]),
                   _null_cell(r["invariance"]["ratio"],
                              r["invariance_null"]["random"]["ratio"]),
                   _null_cell(swap["changed"], swap_null["random"]["changed"])
                   if layer == next(iter(rep["layers"])) else ""])
  lines += table(["model", "layer", "probe: color", "probe: digit", "invariance ratio",
                  "recolor changes prediction"], rows)
  layers = list(dict.fromkeys(layer for m in models.values()
                              for layer in (m.get("representation") or {}).get("layers", {})))
  lines += ["Channels called color-selective / shape-selective / neither, per layer. A live "
            "channel is color-selective when its invariance ratio lies above the random inits' "
            "97.5th percentile of channel ratios of that layer, shape-selective when below their "
            "2.5th (recoloring moves it, relative to a change of digit, less than it moves all "
            "but 2.5% of random channels), else neither (dead channels too); a random channel is "
            "called either with probability 5%. The calls rest on the ratio, not on the probes: "
            "a probe reads what a layer holds, and random layers hold the stroke color too "
            "(their null).", ""]
  lines += table(["model"] + layers, [
      [label(name)] + [_selectivity_cell(m["representation"]["layers"][layer])
                       if layer in m["representation"]["layers"] else "n/a"
                       for layer in layers]
      for name, m in models.items() if m.get("representation")])
  lines += _positive_control(models)
  lines += figure(workdir, "interpret/figures/representation.png",
                 "Probes, invariance and channel calls per layer, each model beside its null")
  lines += figure(workdir, "interpret/figures/invariance_channels.png",
                 "Per-channel invariance ratios against the null's range")


def section_attack_anatomy(res, lines, workdir):
  """9: minimal epsilon and where the perturbations lie, beside a null."""
  att = res.get("attack")
  if not att:
    return
  lines += markdown.heading(
      "9. Minimal epsilon and perturbation anatomy, against a null",
      "Minimal ε: per image, the smallest Linf budget at which targeted PGD succeeds (bisection; "
      "scale-free). Color-shift share: the energy of δ explained by the stroke mask times one RGB "
      "vector per image, beside random-sign perturbations of the same budget clipped the same way "
      "(null). The study says the cheater's perturbations are a color shift of the stroke and the "
      "debiased model's have spatial structure.")
  rows = []
  for name, m in att["models"].items():
    me, an = m["min_eps"], m["anatomy"]
    rows.append([name, "n/a" if me["median"] is None else f"{me['median']:.2f}",
                 fmt(me["found_within_eps_max"]),
                 f"{an['color_shift_share']:.3f} (null {an['color_shift_share_null']:.3f})",
                 fmt(an["color_shift_images_above_null_p95"]),
                 f"{an['stroke_energy_share']:.3f} (null {an['stroke_energy_share_null']:.3f})",
                 f"{an['mean_l2']:.1f}"])
  lines += table(["model", "median minimal ε", "found within ε_max", "color-shift share",
                  "images above null p95 %", "energy on the stroke", "mean L2 of δ"], rows)


def section_profiles(res, lines):
  """The verdicts that differ from another study's (config.compare_with)."""
  other = res.get("compared_with")
  if not other:
    return
  diffs = other["differences"]
  lines += ["## Against the other profile", "",
            f"Compared with `{other['path']}`: this study trains on {budget(res['config'])}; "
            f"that one on {other['budget']}. A verdict that differs is the training budget's "
            "doing or the seeds': " + (f"{len(diffs)} of {len(res['findings'])} differ."
                                      if diffs else "every verdict is the same."), ""]
  if diffs:
    lines += table(["claim", "here", "there"],
                   [[d["claim"], f"{d['here']}: {d['measured_here']}",
                     f"{d['there']}: {d['measured_there']}"] for d in diffs])


def section_made(res, lines, study):
  """The config, software, device and stage times behind the report."""
  lines += ["## How this was made", ""]
  if res.get("command"):
    lines += [f"- command: `{res['command']}`"]
  only = study.to_dict().get("only")
  lines += [f"- stages: {f'the last call ran `{only}`' if only else 'all'}; seeds "
            f"{study.seed}..{study.seed + study.num_seeds - 1} ({study.num_seeds}); data: "
            f"{study.data.train_size} train digits, rho {study.data.rho_train}, coloring "
            f"{study.data.coloring}; the full config is in `config.json`."]
  lines += markdown.environment_lines(res["environment"], res["generated"])
  lines += markdown.stage_table(res["stages"])


def section_findings(res, lines):
  """Every claim tested, the runs it compares and its verdict."""
  lines += ["## Findings", "",
            "The study's qualitative claims, each tested between runs that differ in the method "
            "alone (`name@0`: the method's own λ = 0 grid point, with its optimizer, data, epochs "
            "and seeds). With several seeds a comparison is the paired t-test of the seed "
            "differences, a claim about one run a one-sided one-sample t-test against its "
            f"bound; the level is {verdicts.LEVEL:g} (two-sided for comparisons) after Holm's "
            "correction over the claims of this table (the attack suite's two claims are a "
            "family of their own), and a claim the seeds cannot settle is not resolved with "
            "that many seeds (no evidence either way). With one seed the verdict is "
            "indicative.", ""]
  lines += table(["claim", "tested as", "runs compared", "measured", "verdict"],
                 [[f["claim"], f["rule"], ", ".join(f["runs"]), f["measured"],
                   paper.verdict_text(f)] for f in res["findings"]])


def render(res, study, workdir) -> str:
  """report.md's text from the collected record (findings included), laid out as a paper:
  summary, setup, results, disagreements, limitations, appendix, how it was made."""
  lines = paper.title(res)
  paper.section_summary(res, lines)
  paper.section_setup(res, lines)
  section_findings(res, lines)
  section_cheater(res, lines)
  lines += figure(workdir, "runs/cheater/figures/color_swap.png",
                  "Color-swap probe, cheater (seed 0)")
  section_step_size(res, lines)
  section_penalty(res, lines)
  section_grids(res, lines, "2b. Counterfactual consistency and the color-gradient penalty (new), "
                "λ grids", [("counterfactual", claims.COUNTERFACTUAL),
                            ("color_gradient_penalty", {})])
  section_gradcam(res, lines, workdir)
  section_sweep(res, lines, workdir)
  section_transfer(res, lines, workdir)
  section_side_by_side(res, lines, workdir)
  section_selection(res, lines)
  section_representation(res, lines, workdir)
  section_attack_anatomy(res, lines, workdir)
  lines += attack_suite.section(res.get("attack"))
  lines += attack_suite.certified_section(res.get("attack"))
  paper.section_disagreements(res, lines)
  paper.section_limitations(res, lines)
  paper.section_appendix(res, lines, workdir)
  section_profiles(res, lines)
  section_made(res, lines, study)
  return "\n".join(lines) + "\n"
