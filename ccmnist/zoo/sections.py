"""The benchmark's benchmark.md, section by section, from the collected records and findings.

Every accuracy is mean +- std over seeds at the grid point a selection rule chose (select.py):
each method's headline rule (entries.headline_rule: group_val for a method that may read group
labels or whose paper selects on them, val for the others) unless a table says otherwise. Methods
are ranked by group-balanced accuracy (the papers' metric), oracles apart.
"""

import collections
import pathlib

import numpy as np

from ccmnist.report import markdown
from ccmnist.report import verdicts
from ccmnist.zoo import early_stop
from ccmnist.zoo import entries
from ccmnist.zoo import plan
from ccmnist.zoo import published
from ccmnist.zoo import shortcut

FIGURE = "figures/unbiased_vs_ratio.png"
SELECTION_TITLES = {"val": "val (plain accuracy on val, colored like train: no group labels)",
                    "group_val": "group_val (worst-group accuracy on the group-labelled "
                                 "val_unbiased)",
                    "oracle": "oracle (group-balanced accuracy on the unbiased test set)"}
# The measure that ranks methods, and the columns each cell of the measures table shows.
RANK_MEASURE = "group_balanced"
MEASURE_TITLES = {"group_balanced": "group-balanced", "unbiased": "plain unbiased",
                  "worst_group": "worst group (digit x aligned)",
                  "worst_cell": "worst cell (digit x color)"}
# The names the papers' tables give our entries' methods.
PUBLISHED_AS = {"erm": ("ERM (vanilla)", "Vanilla"), "lff": ("LfF",),
                "groupdro": ("Group DRO", "GroupDRO"), "jtt": ("JTT",)}

fmt, pct, table = markdown.fmt, markdown.percent, markdown.table


def _entry_of(key: str) -> str:
  """The entry of a run key (its last part)."""
  return key.rsplit("/", 1)[1]


def statement(f: dict, titles: dict) -> str:
  """One measured statement as a sentence, with its test and p (Holm-adjusted over its
  family), or "not resolved with N seeds"."""
  a, b = titles.get(_entry_of(f["a"]), _entry_of(f["a"])), titles.get(_entry_of(f["b"]),
                                                                         _entry_of(f["b"]))
  if f["kind"] == "ratio":
    a, b = f"ERM at {f['a'].split('/')[2]}", f"ERM at {f['b'].split('/')[2]}"
  d, n = 100 * f["diff"]["mean"], f["diff"]["n"]
  metric = f.get("measure", "unbiased").replace("_", "-")
  head = (f"{f['cell']}, {metric} accuracy ({f['selection']}-selected): {b} "
          f"{100 * f['b_mean']:.1f}% vs {a} {100 * f['a_mean']:.1f}% "
          f"(they differ in {': '.join([f['differ_in'], *f.get('also_differ_in', [])])})")
  also = (f" The same two runs stand for {', '.join(f['also'])}." if f.get("also") else "")
  test = verdicts.brief(f)
  if f.get("p") is not None:
    test = f"{'paired ' if f.get('statistic') is not None else ''}{test}"
  if f["holds"] is True:
    return f"{head}: {b} is ahead by {d:.1f} points ({test}).{also}"
  if f["holds"] is False:
    return f"{head}: {a} is ahead by {-d:.1f} points ({test}).{also}"
  if n == 1:
    return (f"{head}: the difference, {d:+.1f} points, is no finding "
            f"({f['strength']}).{also}")
  return f"{head}: the difference, {d:+.1f} points, is {verdicts.unresolved(n)} ({test}).{also}"


def _cell_run(res, cell_key: str, entry: str) -> dict:
  """The record of `entry` in a cell, or a missing one."""
  return res["runs"].get(f"{cell_key}/{entry}") or {"status": "missing"}


def _status_text(run: dict) -> str | None:
  """Why a run has no number ('diverged', 'failed', '—'), or None when it has."""
  if run["status"] == "failed":
    return "diverged" if "Loss became" in (run.get("error") or "") else "failed"
  if run["status"] == "missing" or not run.get("selection"):
    return "—"
  return None


def _sel(run: dict, way: str):
  """A run's selection `way`, or None."""
  return (run.get("selection") or {}).get(way)


def _stat(run: dict, way: str, measure: str):
  """The mean_std of `measure` at a run's `way`-selected point, or None."""
  sel = _sel(run, way) if run.get("status") == "done" else None
  return sel["measures"].get(measure) if sel else None


def _mean_of(run: dict, way: str, measure: str = RANK_MEASURE) -> float | None:
  """The seed-mean of `measure` at a run's `way`-selected point, or None."""
  stat = _stat(run, way, measure)
  return None if stat is None else stat["mean"]


def cell_measure(run: dict, way: str = "val", measure: str = RANK_MEASURE) -> str:
  """`measure` at the `way`-selected point, or why there is none."""
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, way)
  return fmt(sel["measures"].get(measure)) if sel else "n/a"


def cell_unbiased(run: dict, way: str = "val") -> str:
  """The plain unbiased accuracy at the `way`-selected point, or why there is none."""
  return cell_measure(run, way, "unbiased")


def cell_measures(run: dict, way: str = "val") -> str:
  """Group-balanced / plain unbiased / worst group / worst cell at the `way`-selected point."""
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, way)
  if not sel:
    return "n/a"
  return " / ".join(fmt(sel["measures"].get(k)) for k in MEASURE_TITLES)


def cell_groups(run: dict, way: str = "val") -> str:
  """Aligned / conflicting / test_hard at the `way`-selected point."""
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, way)
  if not sel:
    return "n/a"
  return " / ".join(fmt(sel["measures"].get(k)) for k in ("aligned", "conflicting", "test_hard"))


def point_label(sel: dict, labels: dict) -> str:
  """A selected grid point: its λ, and its family member's label when it is one's."""
  entry = sel.get("entry")
  return f"{sel['lam']:g}" + (f" {labels[entry]}" if labels.get(entry) else "")


def cell_selections(run: dict, measure: str = RANK_MEASURE, *,
                    labels: dict | None = None) -> str:
  """`measure` under each selection rule (and each one's λ, for a grid; labels: {family
  member: its label})."""
  text = _status_text(run)
  if text:
    return text
  sels = [_sel(run, w) for w in SELECTION_TITLES]
  accs = " · ".join(fmt(s["measures"].get(measure)) if s else "n/a" for s in sels)
  if len(run.get("lam_grid") or ()) > 1 or any(s and s.get("entry") for s in sels):
    accs += " (λ " + " · ".join(point_label(s, labels or {}) if s else "n/a"
                                for s in sels) + ")"
  return accs


def ranked(res, bench, cell_keys, names, rule=None) -> list:
  """`names` by their mean over `cell_keys` of group-balanced accuracy, best first, at `rule`
  (None: each entry's headline rule); entries without a number anywhere last, in order."""
  def score(n):
    way = rule or entries.headline_rule(bench, n)
    got = [_mean_of(_cell_run(res, c, n), way) for c in cell_keys]
    got = [g for g in got if g is not None]
    return -float(np.mean(got)) if got else np.inf
  return sorted(names, key=score)


def section_header(res, bench, lines):
  """The title, the profile's warning and how to read a cell."""
  seeds = f"{bench.num_seeds} seeds ({bench.seed}..{bench.seed + bench.num_seeds - 1})"
  lines += [f"# Debiasing benchmark on colored MNIST ({bench.size} profile)", ""]
  if bench.size != "full":
    lines += [f"> **This is the {bench.size.upper()} profile**, not the benchmark: {seeds}, "
              f"ratios {', '.join(pct(r) for r in bench.ratios)}, fewer digits and epochs and "
              "smaller grids than `configs/zoo.py:full` (settings below). Its numbers show "
              "the pipeline end to end and roughly where methods stand; the full profile's are "
              "the results.", ""]
  draws = ", ".join(f"{p} {bench.protocols[p].data.seed}" for p in plan.protocol_names(bench))
  lines += [f"Each cell: accuracy in % as mean ± std over {seeds} of training, all on one color "
            f"draw of the data (data seed: {draws}), so the std leaves out the draw's own "
            "variance (`tools/data_draw.py` measures it from runs that differ in the data seed "
            "alone). Metrics, all on the unbiased "
            "test set (test_easy at rho 0.1: every digit in a uniformly random color): "
            "**group-balanced** = the mean over its (digit, color) cells of each cell's accuracy "
            "(the papers' metric, LfF's `MultiDimAverageMeter`), which ranks the methods; "
            "*plain unbiased* = accuracy over its examples; *worst group* = its lowest (digit x "
            "aligned) group of 20; *worst cell* = its lowest (digit, color) cell of 100; "
            "*aligned* / *conflicting* = its examples whose color is / is not the digit's cue; "
            "*test_hard* = every color conflicting (rho 0).", "",
            "Model selection (the grid point a number is read at), three rules: "
            + "; ".join(f"**{t.split(' ', 1)[0]}** {t.split(' ', 1)[1]}"
                        for t in SELECTION_TITLES.values()) +
            ". The headline tables read each method under the rule that matches what it may "
            "know: `group_val` for the methods trained with group labels (Group DRO, "
            "reweighting, group-balanced sampling, DFR) and for JTT and EIIL (whose papers "
            "select on group-labelled validation data), `val` for the others; every method is "
            "also shown under every rule. " + _stopped_sentence(bench) + "Oracles (the "
            "grayscale oracle, random recoloring) are ranked apart. Ratios are the "
            "bias-conflicting share of the training set (rho_train = 1 - ratio).", ""]


def _stopped_rows(bench) -> list:
  """The report rows a selection stops early, in report order."""
  return [n for n in plan.method_entries(bench) if entries.stops_early(bench, n)]


def _stopped_sentence(bench) -> str:
  """Which methods a selection stops early, for the header ('' when none)."""
  titles = entries.titles_of(bench)
  names = [titles[n] for n in _stopped_rows(bench)]
  if not names:
    return ""
  are = "is" if len(names) == 1 else "are"
  return (f"{', '.join(names)} {are} read where each seed's selection stops it, as "
          f"{'its paper stops it' if len(names) == 1 else 'their papers stop them'}, where "
          "the run kept its evaluated epochs (section \"Stopped early\" says where each seed "
          "stops); every other method at its last epoch. ")


def section_statements(res, bench, lines):
  """Every comparison as a sentence, grouped by cell."""
  titles = entries.titles_of(bench)
  fs = res["findings"]
  lines += ["## What the measurements say", ""]
  if not fs:
    lines += ["No two runs could be compared (missing runs).", ""]
    return
  found = [f for f in fs if f["holds"] is not None]
  families = {}
  for f in fs:
    families[f["cell"].split("/")[0]] = f["family"]
  sizes = ", ".join(f"{p}: {m}" for p, m in families.items())
  seeds = f"{bench.num_seeds} seeds" if bench.num_seeds != 1 else "1 seed"
  lines += [f"Every sentence compares two runs that differ in one thing, paired over "
            f"{seeds} on group-balanced accuracy (the methods ranked at their "
            "headline selection rules, and each pair read under one rule: their shared headline "
            "rule, else group_val), by the paired t-test "
            f"(two-sided, level {verdicts.LEVEL:g}). The pairs are chosen after ranking (the "
            "leader against the runner-up and ERM, the best method told nothing of the bias "
            "against ERM and against the best given group labels, counterfactual consistency "
            "against its augmentation-only ablation, each oracle against the leader, ERM at "
            "the largest ratio against the smallest); their p-values are Holm-corrected "
            f"over the section's comparisons of one protocol ({sizes}; the same two runs "
            "counted once), and a difference is a finding only when its Holm p is below the "
            "level; otherwise it is not resolved with these seeds (which is no evidence that "
            "the runs are alike). With one seed there is no test: the sign alone is reported, "
            f"as indicative. Findings: {len(found)} of {len(fs)} comparisons.", ""]
  by_cell = {}
  for f in fs:
    by_cell.setdefault(f["cell"], []).append(statement(f, titles))
  lines += [f"- {s}" for sentences in by_cell.values() for s in sentences]
  lines += [""]


def _settings_line(bench, protocol: str, model: str) -> str:
  """A protocol's training settings in one sentence."""
  p = bench.protocols[protocol]
  o, t, d = p.optim, p.train, p.data
  return (f"{p.title}; model `{model}`; {d.train_size} training digits; {t.epochs} epochs, "
          f"batch {t.batch_size}, {o.name} lr {o.lr:g}"
          f"{f' weight decay {o.weight_decay:g}' if o.weight_decay else ''}; {bench.num_seeds} "
          f"seeds; held out: val {d.val_size}, val_unbiased {d.val_unbiased_size}, val_balanced "
          f"{d.val_balanced_size}; test {d.test_size} digits.")


def _label(bench, n: str) -> str:
  return bench.zoo[n].title + (" *(oracle)*" if bench.zoo[n].oracle else "")


# How far below both cues' accuracy on val a run must fall to be marked as fitting neither.
UNDERFIT_MARGIN = 0.05
UNDERFIT_MARK = "‡"


def _grey_entry(bench) -> str | None:
  """The entry trained and tested on grey digits (shape alone), if config.zoo has one."""
  return next((n for n in bench.zoo if bench.zoo[n].get("data", {}).get("grayscale")), None)


def underfits(res, bench, cell_key: str, entry: str) -> bool:
  """Whether `entry`'s run in a cell, at its headline rule, fits data drawn like its training
  set (val) worse than each single cue would by more than UNDERFIT_MARGIN: color alone (val
  accuracy 1 - ratio, predicting each digit's color class) and shape alone (the grayscale
  oracle's val accuracy in the cell). False without the grayscale oracle's run."""
  run, grey = _cell_run(res, cell_key, entry), _grey_entry(bench)
  val = _mean_of(run, entries.headline_rule(bench, entry), "val")
  shape = grey and _mean_of(_cell_run(res, cell_key, grey), entries.headline_rule(bench, grey),
                            "val")
  if val is None or not shape or run.get("ratio") is None:
    return False
  return val < min(1.0 - run["ratio"], shape) - UNDERFIT_MARGIN


def _underfit_note(res, bench, cell_keys: list, names: list) -> list:
  """The note under a headline table that holds a run marked by underfits(): one item per
  marked method, its marked cells in order."""
  marked = {n: [c for c in cell_keys if underfits(res, bench, c, n)] for n in names}
  marked = {n: cells for n, cells in marked.items() if cells}
  if not marked:
    return []
  grey = _grey_entry(bench)
  mean = lambda c, n, m: 100 * _mean_of(_cell_run(res, c, n), entries.headline_rule(bench, n), m)
  ratio = lambda c, n: _cell_run(res, c, n)["ratio"]
  items = [f"- {_label(bench, n)}: " + "; ".join(
      f"at {pct(ratio(c, n))}, val {mean(c, n, 'val'):.1f}% against "
      f"{100 * (1 - ratio(c, n)):.1f}% (color alone) and {mean(c, grey, 'val'):.1f}% (shape "
      f"alone); test aligned {mean(c, n, 'aligned'):.1f}%, conflicting "
      f"{mean(c, n, 'conflicting'):.1f}%" for c in cells) + "." for n, cells in marked.items()]
  return [f"{UNDERFIT_MARK} Fits data drawn like its training set (val) worse than either cue "
          f"alone would, by more than {100 * UNDERFIT_MARGIN:g} points: color alone (1 − ratio) "
          "and shape alone (the grayscale oracle's val). Its number is not that of a model "
          "that fits its data and ignores the bias: aligned accuracy below conflicting is a "
          "reversed bias, both low a run that fits neither.", "", *items, ""]


def same_at_every_ratio(res, bench, cell_keys: list, names: list) -> list:
  """The entries of `names` whose runs give the same group-balanced accuracy, seed for seed, at
  their headline rule in every cell of `cell_keys` (two or more)."""
  if len(cell_keys) < 2:
    return []
  same = []
  for n in names:
    rule = entries.headline_rule(bench, n)
    values = [(_stat(_cell_run(res, c, n), rule, RANK_MEASURE) or {}).get("values")
              for c in cell_keys]
    if values[0] is not None and all(v == values[0] for v in values[1:]):
      same.append(n)
  return same


def _repeated_note(bench, names: list) -> list:
  if not names:
    return []
  return [f"{', '.join(_label(bench, n) for n in names)}: the same group-balanced accuracy, "
          "seed for seed, at every ratio. The ratio changes only the colors the digits are drawn "
          "in, which these runs never see: each of their rows repeats one run.", ""]


def _headline_rows(res, bench, protocol: str, cell_keys: list, names: list) -> list:
  """Rank, method, what it is told of the bias, its headline rule, group-labelled examples seen
  and its group-balanced accuracy per cell (and their mean, for several cells) of each of
  `names`, in order."""
  rows = []
  for i, n in enumerate(names):
    rule = entries.headline_rule(bench, n)
    runs = [_cell_run(res, c, n) for c in cell_keys]
    means = [m for m in (_mean_of(r, rule) for r in runs) if m is not None]
    row = [i + 1 if means else "—", _label(bench, n), entries.told(bench, n), f"`{rule}`",
           entries.group_labels_seen(bench, protocol, n)]
    row += [cell_measure(r, rule) + (f" {UNDERFIT_MARK}" if underfits(res, bench, c, n) else "")
            for c, r in zip(cell_keys, runs)]
    if len(cell_keys) > 1:
      row.append(f"{100 * np.mean(means):.1f}" if means else "n/a")
    rows.append(row)
  return rows


def section_cells(res, bench, lines):
  """Per protocol and model: the headline table (oracles apart), every measure, every rule,
  then the papers' numbers."""
  names = plan.method_entries(bench)
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      lines += [f"## Protocol `{protocol}`, model `{model}`", "", _settings_line(bench, protocol,
                                                                                   model), ""]
      cell_keys = [plan.Run(protocol, model, r, "").cell for r in bench.ratios]
      rule = {n: entries.headline_rule(bench, n) for n in names}
      order = ranked(res, bench, cell_keys, [n for n in names if not bench.zoo[n].oracle])
      oracles = ranked(res, bench, cell_keys, [n for n in names if bench.zoo[n].oracle])
      header = ["method"] + [pct(r) for r in bench.ratios]
      many = len(cell_keys) > 1
      head = (["rank", "method", "told of the bias", "selection",
               "group-labelled examples seen"] +
              [pct(r) for r in bench.ratios] + (["mean over ratios"] if many else []))
      lines += ["**Group-balanced test accuracy**, each method at its headline selection rule "
                "(`val`: plain accuracy on val, colored like train, no group labels; "
                "`group_val`: worst-group accuracy on the group-labelled val_unbiased), ranked "
                "by group-balanced accuracy" + (" (mean over the ratios)" if many else "") +
                ". *Told of the bias*: what the method is given about it (the methods table "
                "below says how). *Group-labelled examples seen*: train examples whose group the "
                "method reads, plus val_balanced (DFR's refit) and val_unbiased (group_val "
                "selection).", ""]
      lines += table(head, _headline_rows(res, bench, protocol, cell_keys, order))
      lines += _underfit_note(res, bench, cell_keys, order)
      if oracles:
        lines += ["**Oracles, ranked apart** (they know what no practitioner does: the "
                  "grayscale oracle trains and tests on grey digits; random recoloring is told "
                  "that the bias is color and never sees a biased color)", ""]
        lines += table(head, _headline_rows(res, bench, protocol, cell_keys, oracles))
      shown = order + oracles
      lines += _repeated_note(bench, same_at_every_ratio(res, bench, cell_keys, shown))
      lines += ["**" + " / ".join(MEASURE_TITLES.values()) + "** (each method at its headline "
                "rule, in the order above)", ""]
      lines += table(header, [[_label(bench, n)] + [
          cell_measures(_cell_run(res, c, n), rule[n]) for c in cell_keys] for n in shown])
      lines += ["**Aligned / conflicting / test_hard** (plain accuracies, each method at its "
                "headline rule)", ""]
      lines += table(header, [[_label(bench, n)] + [
          cell_groups(_cell_run(res, c, n), rule[n]) for c in cell_keys] for n in shown])
      if one_point_each(res):
        lines += [ONE_POINT, ""]
      else:
        lines += ["**Group-balanced accuracy under every rule: " +
                  " · ".join(f"`{w}`" for w in SELECTION_TITLES) +
                  "** (and the λ each chose, for grids of more than one point)", ""]
        labels = {n: bench.zoo[n].get("label", "") for n in bench.zoo}
        lines += table(header, [[_label(bench, n)] + [
            cell_selections(_cell_run(res, c, n), labels=labels) for c in cell_keys]
            for n in shown])
      section_published(res, bench, protocol, lines)


ONE_POINT = ("Every method here trains one grid point (its λ fixed by the config), so the three "
             "selection rules read the same run and cannot differ.")


def one_point_each(res) -> bool:
  """Whether every trained run holds a single grid point and none is stopped early (then
  selection has nothing to choose; a stopped run's rules may stop it at different epochs)."""
  done = [r for r in res["runs"].values() if r.get("status") == "done"]
  stopped = any(s.get("epochs") is not None
                for r in done for s in (r.get("selection") or {}).values())
  return bool(done) and not stopped and all(
      r.get("grid") is not None and len(r["grid"]) <= 1 for r in done)


def ranking_changes(res, bench) -> list:
  """[{'cell', 'a', 'b', 'top_a', 'top_b', 'first', 'moved', 'n'}] for every cell and pair of
  selection rules under which the order of the non-oracle methods by group-balanced accuracy
  differs (every method read under the same rule); top_*: the first three; first: the first
  place (from 1) where the orders differ; moved: how many of the n methods ranked under both
  change place."""
  names = [n for n in plan.method_entries(bench) if not bench.zoo[n].oracle]
  ways = list(SELECTION_TITLES)
  out = []
  for protocol, model, ratio in plan.cells(bench):
    cell = plan.Run(protocol, model, ratio, "").cell
    order = {}
    for w in ways:
      have = [n for n in names if _mean_of(_cell_run(res, cell, n), w) is not None]
      order[w] = ranked(res, bench, [cell], have, rule=w)
    for i, a in enumerate(ways):
      for b in ways[i + 1:]:
        if order[a] != order[b]:
          common = [n for n in order[a] if n in order[b]]
          moved = sum(order[a].index(n) != order[b].index(n) for n in common)
          first = next(k for k, (x, y) in enumerate(zip(order[a] + [None], order[b] + [None]))
                       if x != y)
          out.append({"cell": cell, "a": a, "b": b, "top_a": order[a][:3],
                      "top_b": order[b][:3], "first": first + 1, "moved": moved,
                      "n": len(common)})
  return out


# What each method with an inferred split singles out (methods.Method.inferred_split).
INFERRED_TITLES = {"errors": "its identification run's train errors",
                   "envs": "the inferred environment 1"}


def _inferred_cell(run: dict) -> str:
  """One cell of the inferred-split table: replica means of split_against_bias's shares."""
  split = run.get("inferred_split") if run.get("status") == "done" else None
  if not split:
    return _status_text(run) or "—"
  def pct(k, digits):  # A share is None where its set is empty (e.g. no errors): "n/a".
    values = [r[k] for r in split["replicas"] if r[k] is not None]
    return f"{100 * np.mean(values):.{digits}f}%" if values else "n/a"
  return (f"{pct('marked_share', 1)} of train; conflicting: "
          f"{pct('conflicting_in_marked', 1)} of them, "
          f"{pct('conflicting_in_rest', 2)} of the rest "
          f"(train {100 * split['train_conflicting_share']:.2f}%); "
          f"{pct('conflicting_marked', 0)} of all conflicting")


def section_inferred(res, bench, lines):
  """How the split of train examples that a method told nothing of the bias makes (JTT's error
  set, EIIL's environments) lines up with the bias, per cell; nothing when no run has one."""
  with_split = {r.get("entry") for r in res["runs"].values() if r.get("inferred_split")}
  names = [m for n in plan.method_entries(bench) for m in (n, *plan.members_of(bench, n))
           if m in with_split]  # A family's members (JTT's other T) under their row.
  if not names:
    return
  lines += ["## What the methods told nothing of the bias singled out", "",
            "Methods that infer the bias split the train examples before training: JTT upsamples "
            "its identification run's errors, EIIL trains IRMv1 across two inferred "
            "environments. Here each split is set against the group labels the method never "
            "reads: the share of train it singles out, the bias-conflicting share among those "
            "and among the rest, and the share of all conflicting examples it singles out "
            "(means over the run's replicas; a split is drawn per seed and shared by a seed's "
            "grid points). A split blind to the bias has both conflicting shares near the "
            "train split's own.", ""]
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      cells = [plan.Run(protocol, model, r, "").cell for r in bench.ratios]
      rows = []
      for n in names:
        key = entries.method_of(bench, n).inferred_split
        rows.append([f"{_label(bench, n)} ({INFERRED_TITLES.get(key, key)})"] +
                    [_inferred_cell(_cell_run(res, c, n)) for c in cells])
      lines += [f"**Protocol `{protocol}`, model `{model}`**", ""]
      lines += table(["method (what it singles out)"] + [pct(r) for r in bench.ratios], rows)


def section_rankings(res, bench, lines):
  """Every cell whose ranking changes between selection rules."""
  titles = entries.titles_of(bench)
  changes = ranking_changes(res, bench)
  lines += ["## Ranking changes between selection rules", "",
            "The non-oracle methods ordered by group-balanced accuracy with every method read "
            "under one rule, for each pair of rules; listed where the two orders differ, with "
            "the first three of each, the first place where they differ and how many methods "
            "change place.", ""]
  if not changes:
    lines += [ONE_POINT if one_point_each(res) else
              "No cell's ranking changes between the rules.", ""]
    return
  top = lambda ns: ", ".join(titles[n] for n in ns)
  lines += table(["cell", "rules A vs B", "top 3 under A", "top 3 under B",
                  "first place that differs", "methods that move"],
                 [[c["cell"], f"`{c['a']}` vs `{c['b']}`", top(c["top_a"]), top(c["top_b"]),
                   c["first"], f"{c['moved']} of {c['n']}"] for c in changes])


def _ours_at(res, bench, protocol: str, entry: str, ratio: float) -> str:
  """Our group-balanced accuracy of `entry` at `ratio` (first model) at its headline rule, with
  its number of seeds."""
  model = plan.models_of(bench.protocols[protocol])[0]
  cell = plan.Run(protocol, model, ratio, "").cell
  run = _cell_run(res, cell, entry)
  text = cell_measure(run, entries.headline_rule(bench, entry))
  stat = _stat(run, entries.headline_rule(bench, entry), RANK_MEASURE)
  return f"{text}, n={stat['n']}" if stat and stat.get("n") else text


def _published_cell(mean, std) -> str:
  """A published cell as printed: '35.34 (0.13)', or '63.12' where no std is printed."""
  return f"{mean:.2f}" + ("" if std is None else f" ({std:.2f})")


def section_published(res, bench, protocol: str, lines):
  """The published numbers and training settings of the papers a protocol follows."""
  follows = bench.protocols[protocol].follows
  if not follows:
    return
  theirs = published.PROTOCOLS[follows]
  ours = bench.protocols[protocol]
  lines += [f"**Beside the published numbers** (the protocol follows {theirs['paper']}, "
            f"`{theirs['repo']}`)", ""]
  tables = published.tables()
  if not tables:
    lines += ["No published number is quoted yet: `ccmnist/zoo/published.py` holds only "
              "numbers read in a named source, and lists what it could not read:", ""]
  ran = {published.published_ratio(r) for r in bench.ratios} - {None}
  entries_run = plan.method_entries(bench)
  for t in tables.values():
    ratios = sorted(published.RATIOS, reverse=True)
    rows = []
    for method, cells in t["rows"].items():
      entry = next((e for e, aliases in PUBLISHED_AS.items() if method in aliases), None)
      row = [method + (f" (ours: {bench.zoo[entry].title}, `{entries.headline_rule(bench, entry)}`)"
                       if entry in entries_run else "")]
      for r in ratios:
        text = _published_cell(*cells[r])
        if entry in entries_run and r in ran:
          text += f" · ours {_ours_at(res, bench, protocol, entry, r)}"
        row.append(text)
      rows.append(row)
    lines += [f"*{t['paper']}, {t['table']}*: {t['metric']}, by {t['ratio_convention']}", ""]
    lines += table(["method"] + [pct(r) for r in ratios], rows)
    lines += [f"Source: {t['source']} Caveats: {t['caveats']}", ""]
  if tables:
    lines += ["*Ours* beside a published cell: our group-balanced accuracy (mean ± std, n "
              "seeds) at the method's headline selection rule, in this profile's data and "
              "epochs. The metrics differ: LfF's code reports the mean over the 10 x 10 (digit, "
              "color) cells of each cell's accuracy for its last step's model (no selection); "
              "DFA's code reports plain accuracy at the checkpoint with the best test accuracy; "
              "ours is LfF's cell-averaged accuracy at the grid point and model our selection "
              "rule (`val` or `group_val`, named beside each method) chose, never the test set.",
              ""]
  if published.UNQUOTED:
    lines += ["Not quoted (read in no source):", ""]
    lines += [f"- {text}" for text in published.UNQUOTED.values()] + [""]
  steps = theirs.get("steps")
  lines += ["Training settings, theirs (source: file:lines at the pinned commit) vs ours:", ""]
  src = theirs["sources"]
  lines += table(["setting", "theirs", "source", "ours"], [
      ["optimizer", f"{theirs['optimizer']} lr {theirs['lr']:g}, weight decay "
                    f"{theirs['weight_decay']:g}, {theirs['lr_schedule']}",
       f"{src['optimizer']}; {src['lr']}", f"{ours.optim.name} lr {ours.optim.lr:g}, weight "
                                            f"decay {ours.optim.weight_decay:g}, "
                                            f"{ours.optim.schedule}"],
      ["batch", theirs["batch_size"], src["batch_size"], ours.train.batch_size],
      ["training", f"{theirs.get('epochs', '?')} epochs ({steps} steps)", src["steps"],
       f"{ours.train.epochs} epochs of {ours.data.train_size} digits"],
      ["model", f"{theirs['model']['name']} {theirs['model'].get('widths', '')}", src["model"],
       ", ".join(plan.models_of(ours))],
      ["selection", theirs["selection"], src["selection"],
       "per method, the rule that matches what it may know: `group_val` (worst-group accuracy "
       f"on the group-labelled val_unbiased, {ours.data.val_unbiased_size} digits) for methods "
       "trained with group labels and for JTT and EIIL, `val` (plain accuracy on val, colored "
       "like train) for the others; every method also under every rule, and under `oracle` "
       "(the unbiased test set) as an upper bound"],
      ["metric", theirs["metric"], src["metric"],
       "the same: mean over the (digit, color) cells of the unbiased test set of each cell's "
       "accuracy (group-balanced), with plain accuracy, worst group (of 20) and worst cell (of "
       "100) beside it"],
  ])


def _stops_text(run: dict, rule: str) -> str:
  """The epochs a run's seeds stop at under `rule`, or why it was read at its last."""
  status, sel = _status_text(run), _sel(run, rule)
  if status or not sel:
    return status or "—"
  if sel.get("epochs") is None:
    return "last"
  return ", ".join(str(e) for e in sel["epochs"])


def section_stopped(res, bench, lines):
  """Which methods are stopped early, on what, and the epoch each seed stops at."""
  names = _stopped_rows(bench)
  if not names:
    return
  titles = entries.titles_of(bench)
  lines += markdown.heading(
      "Stopped early, as their papers stop them",
      f"{', '.join(titles[n] for n in names)} (`config.stop_early`) "
      f"{'is' if len(names) == 1 else 'are'} read seed by seed at "
      "the evaluated epoch where the selection rule's criterion is best (its tie break next, "
      "then the first of equals, as JTT's code takes `np.argmax` over epochs), and each grid "
      "point is chosen on these stopped values; every other method is read at its last epoch. "
      "Under the group_val rule a seed stops on the worst group of the small group-labelled "
      "val_unbiased, under val on the biased val, under the oracle on the test set itself. The "
      "epoch each seed stops at, under the method's headline rule (seeds in order):")
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      cells = [plan.Run(protocol, model, r, "").cell for r in bench.ratios]
      runs = {(c, n): _cell_run(res, c, n) for c in cells for n in names}
      done = [r for r in runs.values() if r["status"] == "done"]
      if not done:
        continue
      evaluated = sorted({e for r in done for e in r.get("evaluated_epochs") or []})
      kept = (f"epochs {', '.join(map(str, evaluated))} of {done[0]['epochs']} kept"
              if evaluated else "no run kept its evaluated epochs")
      lines += [f"Protocol `{protocol}`, model `{model}` ({kept}):", ""]
      rows = [[titles[n], f"`{entries.headline_rule(bench, n)}`",
               *[_stops_text(runs[(c, n)], entries.headline_rule(bench, n)) for c in cells]]
              for n in names]
      lines += table(["method", "rule", *[pct(r) for r in bench.ratios]], rows)
      if any(cell == "last" for row in rows for cell in row):
        lines += ["*last*: read at its last epoch, as the tables above report it: the run was "
                  "trained before each evaluated epoch's predictions and parameters were kept, "
                  "so it cannot be stopped (train it again: delete its folder and rerun).", ""]


def section_methods(res, bench, lines):
  """What each method knows of the bias, what λ means and its grid."""
  lines += ["## The methods and what each knows", "",
            "What each is told about the bias (the method's `knows`, or its entry's when its data "
            "knows more), what λ means and the grid each profile trains as replicas of one "
            "program.", ""]
  rows = []
  for n in plan.method_entries(bench):
    e = bench.zoo[n]
    m = entries.method_of(bench, n)
    needs = f"; needs the `{e.needs}` run" if e.needs else ""
    grid = ", ".join(f"{g:g}" for g in e.lam_grid)
    for member in plan.members_of(bench, n):  # The family's other grids, each labelled.
      grid += (f"; {bench.zoo[member].label or member}: "
               + ", ".join(f"{g:g}" for g in bench.zoo[member].lam_grid))
    rows.append([e.title, f"`{e.loss}`{needs}", entries.knows(bench, n), m.lam_means, grid,
                 m.paper or "—"])
  lines += table(["method", "loss", "knows", "λ means", "λ grid", "paper"], rows)


def section_figure(res, bench, workdir, lines):
  """The accuracy-against-ratio figure, when it was drawn."""
  if (pathlib.Path(workdir) / FIGURE).exists():
    lines += [f"![Group-balanced test accuracy against the bias-conflicting ratio]({FIGURE})",
              "*Group-balanced test accuracy (each method at its headline selection rule, mean "
              "± std over seeds) against the bias-conflicting share of the training set, per "
              "protocol and model; one color per method, the grayscale oracle dashed.*", ""]


def _hours(seconds: float) -> str:
  """A duration in s, min or h, whichever reads best."""
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


def section_cost(res, bench, lines):
  """Measured cost per entry, the projected cost of a profile, stage times."""
  env = res["environment"]
  cost = res["cost"]
  lines += ["## Cost", ""]
  by_entry = {}
  for r in res["runs"].values():
    if r["status"] == "done" and r.get("cost"):
      by_entry.setdefault(r["entry"], []).append(r["cost"])
  rows = []
  for entry, costs in by_entry.items():
    walls = [c["wall_s"] for c in costs if c["wall_s"] is not None]
    rates = [c["rate"] for c in costs if c["rate"]]
    rows.append([bench.zoo[entry].title, len(costs), f"{sum(walls):.0f}" if walls else "n/a",
                 f"{np.median(rates):.0f}" if rates else "n/a"])
  lines += [f"Measured on {env['device']} x{env['device_count']} (`results.json`: every run's "
            "wall time, train time, examples and rate).", ""]
  lines += table(["entry", "runs", "wall time (s, sum)", "examples/s (median over runs, all "
                                                         "replicas)"], rows)
  proj = cost["projection"]
  profile = cost["projected_profile"]
  listed = ", ".join(proj["unpriced"][:6]) + (" ..." if len(proj["unpriced"]) > 6 else "")
  unpriced = (f"; {len(proj['unpriced'])} runs unpriced (no measured rate for their model or "
              f"method: {listed})" if proj["unpriced"] else "")
  by_model = ", ".join(f"{m} {_hours(s)}" for m, s in proj["by_model"].items())
  lines += [f"**Projected cost of the `{profile}` profile** at these measured rates on this "
            f"machine: {_hours(proj['total_s'])} for {proj['priced']} of its {proj['runs']} runs "
            f"({by_model}){unpriced}. Models this profile does not train are priced from a short "
            "ERM probe run each (`cost_probe/`), other methods on them at the method's measured "
            "cost relative to ERM. Stage times of this run (each of the call that finished the "
            "stage: a stage resumed over several sittings counts its last, while the runs' wall "
            "times above count every call that trained them):", ""]
  lines += markdown.stage_table(res["stages"])
  lines += analysis_cost_lines(res.get("analysis") or {})


def analysis_cost_lines(analysis: dict) -> list:
  """The analysis' measured time per cell, per model (analysis.json's timing): it runs in the
  analyse stage, or in the train stage with --analyse_as_trained."""
  by_model = {}
  for key, rec in analysis.items():
    if (rec.get("timing") or {}).get("seconds") is not None:
      by_model.setdefault(key.split("/")[1], []).append(rec["timing"]["seconds"])
  if not by_model:
    return []
  parts = [f"`{m}` {np.median(s):.1f} s per cell (median of {len(s)}; {sum(s):.0f} s in all)"
           for m, s in by_model.items()]
  return ["The analysis of each method at its headline point (all its seeds, vmapped; each "
          "model's random inits once, in its first cell): " + "; ".join(parts) + ".", ""]


def section_made(res, bench, lines):
  """The command, software and device behind the report."""
  command = res.get("command") or (f"python -m launch.zoo --config=configs/zoo.py:{bench.size} "
                                    "--workdir=DIR (not recorded: the profile's own)")
  lines += ["## How this was made", "",
            f"- `{command}` (the whole config is in `config.json`; every run is a training "
            "workdir under `runs/<protocol>/<model>/rho<rho_train>/<entry>/`)."]
  lines += [f"- {trained_on(res)}"]
  lines += markdown.environment_lines(res["environment"], res["generated"])


def trained_on(res) -> str:
  """Which code trained the runs (a benchmark of several sittings may span commits)."""
  count = collections.Counter(c for r in res["runs"].values()
                              for c in (r.get("cost") or {}).get("code", []))
  if not count:
    return "The code that trained the runs is not recorded."
  return "Runs trained on code " + ", ".join(
      f"{c} ({n} run{'s' * (n != 1)})" for c, n in sorted(count.items())) + "."



def render(res, bench, workdir) -> str:
  """benchmark.md's text from the collected record (findings included)."""
  lines = []
  section_header(res, bench, lines)
  section_statements(res, bench, lines)
  section_figure(res, bench, workdir, lines)
  section_cells(res, bench, lines)
  shortcut.section(res, bench, workdir, lines)
  section_inferred(res, bench, lines)
  section_rankings(res, bench, lines)
  section_stopped(res, bench, lines)
  early_stop.section(res, bench, lines)
  section_methods(res, bench, lines)
  section_cost(res, bench, lines)
  section_made(res, bench, lines)
  return "\n".join(lines) + "\n"


def figure_panels(res, bench) -> dict:
  """{'protocol / model': {entry: (ratios, means, stds)}} of group-balanced accuracy, each
  entry at its headline selection rule."""
  panels = {}
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      series = {}
      for n in plan.method_entries(bench):
        ratios, means, stds = [], [], []
        for r in sorted(bench.ratios):
          run = _cell_run(res, plan.Run(protocol, model, r, "").cell, n)
          stat = _stat(run, entries.headline_rule(bench, n), RANK_MEASURE)
          ratios.append(r)
          means.append(stat and stat["mean"])
          stds.append(stat and stat["std"])
        series[n] = (ratios, means, stds)
      panels[f"{protocol} / {model}"] = series
  return panels
