"""benchmark.md's "Did the method remove the shortcut?" sections and their figure, from the
analyse stage's records (analyse.collect: res['analysis']).

Each measure of analyse.py is shown as mean ± std over seeds at the run's headline grid point,
beside its null (the random inits' mean), with two verdicts (report/verdicts.py's tests at its
level, each uncorrected in the tables; the sentences below them Holm-correct over a cell's
methods): against ERM of the same cell (verdicts.paired_test over seeds) and
against the null (analyse.null_test: Welch's t-test, seeds against inits). A method's
call (call()): it **uses** color when its predictions change on recoloring beyond those of the
cell's color-blind reference (reference_of: a run trained on digits whose color says nothing of
the class, whose changes come from the recoloring's small intensity gap alone), or of the random
inits where the cell has none; otherwise it **hides** the shortcut when its penultimate features
still carry color at the null's level or above (a linear probe reads it as well as from a random
network's features, or better), and **removed** it when they carry less than the null;
**unresolved** when the seeds cannot tell. A trained reference is needed where random inits
change no prediction at all (the LfF MLP, fed pixels / 255² as in the authors' code, predicts
one class for every digit at init), a null that every method would clear.
"""

import numpy as np

from ccmnist.report import markdown
from ccmnist.report import verdicts
from ccmnist.zoo import analyse
from ccmnist.zoo import entries
from ccmnist.zoo import plan

FIGURE = "figures/uses_color_vs_accuracy.png"
CARRIES_FIGURE = "figures/carries_vs_uses_color.png"
# Two tables per cell: what the model does, what its features and its robustness say.
TABLES = (("uses_color", "follows_color", "aligned_accuracy", "conflicting_accuracy",
           "aligned_minus_conflicting"),
          ("color_probe", "digit_probe", "min_eps", "color_shift_share"))
SHORT = {"uses_color": "uses color", "follows_color": "follows color",
         "aligned_accuracy": "aligned acc.", "conflicting_accuracy": "conflicting acc.",
         "aligned_minus_conflicting": "aligned − conflicting", "color_probe": "color probe",
         "digit_probe": "digit probe", "min_eps": "median min. ε",
         "color_shift_share": "color-shift share"}


def _num(value, measure: str) -> str:
  if value is None:
    return "n/a"
  if measure in analyse.NOT_RATES:
    return f"{value:.2f}"
  return f"{100 * value:.1f}"


def _stat_text(stat: dict, measure: str) -> str:
  if stat is None or stat["mean"] is None:
    return "n/a"
  text = _num(stat["mean"], measure)
  if stat["n"] > 1:
    text += f" ± {_num(stat['std'], measure)}"
  if stat["n"] < len(stat["values"]):
    text += f" ({len(stat['values']) - stat['n']} not found)"
  return text


def _mark(verdict, up: str, down: str, same: str) -> str:
  if verdict is None:
    return ""
  return {True: up, False: down, None: same}[verdict[0]]


def cell(rec: dict, erm: dict | None, measure: str) -> str:
  """'mean ± std (null m) marks' of one measure of one run."""
  stat, null = rec.get(measure), rec.get(f"{measure}_null")
  text = _stat_text(stat, measure)
  if null and null["mean"] is not None:
    text += f" (null {_num(null['mean'], measure)})"
  elif null and null["values"]:  # Every init's value missing: a minimal ε never found.
    text += " (null: not found)"
  marks = []
  if erm is not None and erm is not rec and stat is not None:
    marks.append(_mark(analyse.versus_erm(erm[measure], stat), "▲E", "▼E", "=E"))
  if null is not None and stat is not None:
    marks.append(_mark(analyse.versus_null(stat, null), "▲N", "▼N", "=N"))
  marks = [m for m in marks if m]
  return text + (" " + " ".join(marks) if marks else "")


def reference_of(bench, recs: dict) -> str | None:
  """The entry of a cell's records that "uses color" is tested against: an oracle trained and
  tested on colored digits (random recoloring: color independent of the class), if analysed."""
  for n, rec in recs.items():
    if bench.zoo[n].oracle and not rec["stimuli"].get("grayscale"):
      return n
  return None


def calls_of(bench, recs: dict) -> tuple:
  """(the cell's reference entry or None, {entry: its call}) of a cell's records; the reference
  itself is called 'reference'."""
  ref = reference_of(bench, recs)
  return ref, {n: "reference" if n == ref else call(r, recs[ref] if ref else None)
               for n, r in recs.items()}


def call(rec: dict, reference: dict | None = None) -> str:
  """'uses' / 'hides' / 'removed' (module docstring), 'unresolved' when the seeds cannot
  tell, 'grey input' for a run trained and tested on grey digits (nothing to remove), 'n/a'.

  uses: uses color above the reference's seeds (reference_of's record), else above the random
  inits (Welch's t-test, analyse.null_test). When the test does not resolve it, a run whose
  every seed lies within the reference's range does not use color, and one with a seed above
  it is unresolved. Then, not using color: it removed the shortcut when its color probe lies
  below the null's (tested), hides it when above, or when unresolved with every seed at or
  above the inits' lowest; else unresolved.
  """
  if rec["stimuli"].get("grayscale"):
    return "grey input"
  bar = reference["uses_color"] if reference is not None else rec["uses_color_null"]
  uses = analyse.versus_null(rec["uses_color"], bar)
  carries = analyse.versus_null(rec["color_probe"], rec["color_probe_null"])
  if uses is None or carries is None:
    return "n/a"
  if uses[0] is True:
    return "uses"
  top = max(v for v in bar["values"] if v is not None)
  if uses[0] is None and max(rec["uses_color"]["values"]) > top:
    return "unresolved"
  if carries[0] is False:
    return "removed"
  low = min(v for v in rec["color_probe_null"]["values"] if v is not None)
  if carries[0] is True or min(rec["color_probe"]["values"]) >= low:
    return "hides"
  return "unresolved"


def reversed_bias(rec: dict) -> bool:
  """Whether aligned accuracy lies below conflicting accuracy beyond the seed spread (the
  paired seed differences against 0, verdicts.py's rule)."""
  values = rec["aligned_minus_conflicting"]["values"]
  if not values or any(v is None for v in values):
    return False
  return verdicts.decide(verdicts.paired_test([0.0] * len(values), values),
                         direction=1)[0] is False


def _records(res, bench, protocol: str, model: str, ratio: float) -> dict:
  """{entry: record} of the cell's method entries that were analysed, in report order."""
  cell_key = plan.Run(protocol, model, ratio, "").cell
  got = res.get("analysis") or {}
  return {n: got[f"{cell_key}/{n}"] for n in plan.method_entries(bench)
          if f"{cell_key}/{n}" in got}


def _label(bench, n: str) -> str:
  title = bench.zoo[n].title
  return f"{title} (oracle)" if bench.zoo[n].oracle and "oracle" not in title else title


def _uses_against_erm(bench, erm: dict, others: dict) -> tuple:
  """(sentences, the methods that use color less than ERM): each method's uses color against
  ERM's, paired t-tests over seeds, Holm-corrected over the cell's methods as one family, which
  also names those that use it more."""
  if not others:
    return [], []
  judged = verdicts.judge(
      [{"entry": n} for n in others],
      [(t, 1, None) if t is not None else None for t in
       (analyse.erm_test(erm["uses_color"], r["uses_color"]) for r in others.values())])
  by = {h: [j["entry"] for j in judged if j["holds"] is h] for h in (False, True)}
  names = lambda ns: f": {', '.join(_label(bench, n) for n in ns)}" if ns else ""
  family = next((j["family"] for j in judged if j.get("family")), 0)
  return [f"{len(by[False])} of {len(others)} other methods use color less than ERM"
          f"{names(by[False])}; {len(by[True])} use it more{names(by[True])} (paired t-tests "
          f"over seeds, Holm-corrected over the {family} tested)."], by[False]


def _where_less(bench, erm: dict, others: dict, less: list) -> list:
  """Of the methods that use color less than ERM, those whose features carry less color than
  ERM's too (color probe, paired t-tests over seeds, Holm-corrected over these methods) and
  those that took it from the output only."""
  names = [n for n in less if not others[n]["stimuli"].get("grayscale")]
  same = [n for n in names if others[n]["color_probe"]["values"] == erm["color_probe"]["values"]]
  names = [n for n in names if n not in same]  # Same features (DFR refits ERM's head): untested.
  judged = verdicts.judge(
      [{"entry": n} for n in names],
      [(t, 1, None) if t is not None else None for t in
       (analyse.erm_test(erm["color_probe"], others[n]["color_probe"]) for n in names)])
  text = lambda ns: ", ".join(_label(bench, n) for n in ns)
  parts = []
  for holds, how in ((False, "less color than ERM's too"), (None, "color not resolved against "
                     "ERM's"), (True, "more color than ERM's")):
    got = [j["entry"] for j in judged if j["holds"] is holds]
    if got:
      parts.append(f"{how} for {text(got)}")
  out = []
  if parts:
    out.append(f"Of those using it less (grey input aside), the features entering the head carry "
               f"{'; '.join(parts)} (color probe against ERM's, paired t-tests over seeds, "
               f"Holm-corrected over {len(names)}).")
  if same:
    out.append(f"{text(same)} keeps ERM's features (its color probe equals ERM's, seed for "
               "seed): it changed its output, not its representation.")
  return out


def statements(res, bench, protocol: str, model: str, ratio: float) -> list:
  """Measured sentences of one cell, generated from its records ([] without ERM's)."""
  out = []
  recs = _records(res, bench, protocol, model, ratio)
  if "erm" not in recs:
    return out
  erm = recs["erm"]
  where = f"{model} at ratio {markdown.percent(ratio)}"
  u, un = erm["uses_color"]["mean"], erm["uses_color_null"]["mean"]
  out.append(f"{where}: ERM changes {100 * u:.1f}% of its predictions when only the color "
             f"changes (random inits: {100 * un:.1f}%) and predicts "
             f"{100 * erm['follows_color']['mean']:.1f}% of conflicting digits as their "
             "color's class.")
  others = {n: r for n, r in recs.items() if n != "erm"}
  said, less = _uses_against_erm(bench, erm, others)
  out += said + _where_less(bench, erm, others, less)
  ref, calls = calls_of(bench, recs)
  calls.pop(ref, None)
  if all(v == 0 for v in erm["uses_color_null"]["values"]):
    out.append("The random inits change no prediction on recoloring (0 for every init): "
               "a null that any model changing one prediction clears.")
  against = (f"against the color-blind reference, {_label(bench, ref)}, which changes "
             f"{100 * recs[ref]['uses_color']['mean']:.1f}% of its predictions on "
             "recoloring" if ref else "against the random inits")
  out.append(f"Calls, {against}: {_by_call(bench, calls)}.")
  bar = "the color-blind reference" if ref else "random inits"
  for kind, text in (("hides", f"use color no more than {bar} but still carry it in "
                               "their penultimate features at the random inits' level or "
                               "above: they hide the shortcut"),
                     ("removed", f"use color no more than {bar} and carry it less than "
                                 "random inits")):
    names = [n for n, c in calls.items() if c == kind]
    if names:
      probes = ", ".join(f"{_label(bench, n)} {100 * recs[n]['color_probe']['mean']:.1f}% "
                         f"(null {100 * recs[n]['color_probe_null']['mean']:.1f}%)"
                         for n in names)
      out.append(f"{', '.join(_label(bench, n) for n in names)} {text} (color probe: "
                 f"{probes}).")
  reversed_ = [n for n, r in recs.items() if reversed_bias(r)]
  if reversed_:
    out.append(f"Reversed bias (aligned accuracy below conflicting beyond the seed spread): "
               f"{', '.join(_label(bench, n) for n in reversed_)}.")
  eps = {n: r["min_eps"]["mean"] for n, r in recs.items()
         if "min_eps" in r and r["min_eps"]["mean"] is not None}
  if eps:
    best = max(eps, key=eps.get)
    null_eps = erm["min_eps_null"]["mean"]
    null_text = (_num(null_eps, "min_eps") if null_eps is not None else
                 f"not found within {erm['stimuli']['attack']['eps_max']:g}")
    out.append(f"Median minimal ε of targeted PGD (pixel levels): ERM "
               f"{_num(eps.get('erm'), 'min_eps')}, largest {_label(bench, best)} "
               f"{eps[best]:.2f} (random inits: {null_text}).")
  return out


def section(res, bench, workdir, lines) -> None:
  """One "Did the method remove the shortcut?" section per protocol, and the figure."""
  del workdir
  got = res.get("analysis") or {}
  for protocol in plan.protocol_names(bench):
    lines += [f"## Did the method remove the shortcut? (protocol `{protocol}`)", ""]
    models = plan.models_of(bench.protocols[protocol])
    if not any(_records(res, bench, protocol, m, r) for m in models for r in bench.ratios):
      lines += ["Not analysed (run the `analyse` stage).", ""]
      continue
    any_rec = next(v for k, v in got.items() if k.startswith(f"{protocol}/"))
    st = any_rec["stimuli"]
    lines += [
        f"Each run at its headline grid point, its {bench.num_seeds} seeds, on "
        f"{st['num_digits']} test digits (balanced over the classes). **uses color**: the "
        "share of predictions that change when only the color changes (each digit recolored "
        "to a palette color of the nearest channel-mean intensity; mean intensity gap "
        f"{st['intensity_gap_mean']:.1f} pixel levels); **follows color**: conflicting "
        "digits predicted as the class their color cues; aligned / conflicting accuracy on the "
        "same digits painted in a cueing / a conflicting color (aligned − conflicting below 0: "
        "a reversed bias). **color / digit probe**: held-out accuracy of a linear (ridge) probe "
        "on the features entering the head (chance: 1 / colors, 1 / classes). **median min. ε**: "
        f"targeted PGD (L-{st['attack']['norm'][1:]}, {st['attack']['steps']} steps, success = "
        f"argmax) by bisection on [0, {st['attack']['eps_max']:g}] pixel levels, on "
        f"{st['num_attack']} digits; **color-shift share**: the share of the perturbation's "
        f"energy at ε {st['attack']['eps']:g} that is one RGB shift of the stroke. Rates in %.",
        "",
        f"Beside each value: its **null**, the mean of {st['null_inits']} random inits of the "
        "architecture on the same digits. Marks (tests at level 0.05, each uncorrected: a table "
        "of many marks holds some false ones): ▲E / ▼E above / below ERM by report/verdicts.py's "
        "paired t-test over seeds, =E not resolved; ▲N / ▼N / =N the same against the null by "
        "Welch's t-test (seeds against inits, unpaired). **call**: *uses* when it uses color "
        "above the cell's color-blind reference (random recoloring, trained on digits whose "
        "color says nothing of the class: its changes come from the recoloring's intensity gap "
        "alone; Welch's t-test, seeds against its seeds), or above the random inits (▲N) in a "
        "cell without one; otherwise, when it does not use color (not above, and every seed "
        "within the reference's range), *removed* when its color probe lies below the null's "
        "(▼N) and *hides* when its features still carry color as a random network's do or more "
        "(▲N, or every seed at or above the inits' lowest); *unresolved* when the seeds cannot "
        "tell. The grayscale oracle, when run, is the no-color reference of the probes: it is "
        "trained and tested on grey digits (*grey input*).", ""]
    for model in models:
      for ratio in bench.ratios:
        recs = _records(res, bench, protocol, model, ratio)
        if not recs:
          continue
        erm = recs.get("erm")
        calls = calls_of(bench, recs)[1]
        lines += [f"**`{model}`, ratio {markdown.percent(ratio)}** (rho_train "
                  f"{plan.rho_of(ratio):g})", ""]
        for i, cols in enumerate(TABLES):
          head = ["method"] + [SHORT[c] for c in cols] + (["call"] if i == 0 else [])
          rows = [[_label(bench, n)] + [cell(r, erm, c) for c in cols]
                  + ([calls[n]] if i == 0 else []) for n, r in recs.items()]
          lines += markdown.table(head, rows)
        layer_rows = _layer_rows(bench, recs)
        if layer_rows:
          layers = [k.split("@", 1)[1] for k in next(iter(recs.values()))
                    if k.startswith("color_probe@") and not k.endswith("_null")]
          lines += ["Color probe on each conv layer (pooled activations), % (null):", ""]
          lines += markdown.table(["method"] + layers, layer_rows)
        said = statements(res, bench, protocol, model, ratio)
        if said:
          lines += [" ".join(said), ""]
  if got:
    lines += [f"![Uses color against group-balanced accuracy]({FIGURE})",
              "*How much each method uses color (predictions changed by recoloring, mean over "
              "seeds) against its group-balanced test accuracy, one point per method and ratio "
              "(labelled with the ratio), per protocol and model; the dotted line is the "
              "random inits' value; the grayscale oracle (squares), when run, sees grey "
              "digits: its value is the no-color reference.*", ""]
  if carries_points(res, bench):
    lines += [f"![Carries color against uses color]({CARRIES_FIGURE})",
              "*How much color each method's features carry (held-out linear color probe on the "
              "features entering the head, mean over seeds) against how much its predictions use "
              "it, one point per method and ratio, per protocol and model; the dotted line is "
              "the random inits' probe. Low on both: color removed; left but high: color taken "
              "from the output while the representation keeps it. The grayscale oracle is left "
              "out (its probe reads grey features).*", ""]


def _by_call(bench, calls: dict) -> str:
  """'*uses* (2): A, B; *removed* (1): C', the methods grouped by their call in order of first
  appearance."""
  kinds = list(dict.fromkeys(calls.values()))
  return "; ".join(
      f"*{kind}* ({sum(c == kind for c in calls.values())}): "
      + ", ".join(_label(bench, n) for n, c in calls.items() if c == kind) for kind in kinds)


def _layer_rows(bench, recs: dict) -> list:
  rows = []
  for n, r in recs.items():
    keys = [k for k in r if k.startswith("color_probe@") and not k.endswith("_null")]
    if not keys:
      return []
    rows.append([_label(bench, n)] + [
        f"{_stat_text(r[k], 'color_probe')} ({_num(r[k + '_null']['mean'], 'color_probe')})"
        for k in keys])
  return rows


def _panels(res, bench, xy, null_key: str) -> dict:
  """{'protocol / model': {'points': [(entry, ratio, x, y)], 'null': the mean of null_key over
  the runs that saw colored digits}}, one point per analysed run for which xy(run key, entry,
  record) gives (x, y) (None: no point)."""
  panels = {}
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      pts, nulls = [], []
      for ratio in bench.ratios:
        for n, rec in _records(res, bench, protocol, model, ratio).items():
          got = xy(plan.Run(protocol, model, ratio, n).key, n, rec)
          if got is not None:
            pts.append((n, ratio, *got))
          if not rec["stimuli"].get("grayscale"):  # Grey stimuli: a null of their own.
            nulls.append(rec[null_key]["mean"])
      if pts:
        nulls = [v for v in nulls if v is not None]
        panels[f"{protocol} / {model}"] = {"points": pts,
                                           "null": float(np.mean(nulls)) if nulls else None}
  return panels


def figure_points(res, bench) -> dict:
  """_panels of (group-balanced accuracy at the headline rule, uses color), null: the random
  inits' uses color."""
  def xy(key, n, rec):
    run = res["runs"].get(key) or {}
    sel = (run.get("selection") or {}).get(entries.headline_rule(bench, n))
    acc = sel and sel["measures"]["group_balanced"]["mean"]
    uses = rec["uses_color"]["mean"]
    return None if acc is None or uses is None else (acc, uses)
  return _panels(res, bench, xy, "uses_color_null")


def carries_points(res, bench) -> dict:
  """_panels of (uses color, color probe) of every run that is not grey input (its probe reads
  grey features, against a null of its own), null: the random inits' color probe."""
  def xy(key, n, rec):
    del key, n
    uses, probe = rec["uses_color"]["mean"], rec["color_probe"]["mean"]
    if rec["stimuli"].get("grayscale") or uses is None or probe is None:
      return None
    return uses, probe
  return _panels(res, bench, xy, "color_probe_null")
