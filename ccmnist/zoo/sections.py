"""The benchmark's benchmark.md, section by section, from the collected records and findings.

Every accuracy is mean +- std over seeds at the grid point a selection chose (val, colored like
train, unless a table says otherwise).
"""

import pathlib

import numpy as np

from ccmnist.report import markdown
from ccmnist.report import verdicts
from ccmnist.zoo import entries
from ccmnist.zoo import plan
from ccmnist.zoo import published

FIGURE = "figures/unbiased_vs_ratio.png"
SELECTION_TITLES = {"val": "val (colored like train)", "val_unbiased": "val_unbiased (rho 0.1)",
                    "oracle": "oracle (the unbiased test set)"}
# The names the papers' tables give our entries' methods.
PUBLISHED_AS = {"erm": ("Vanilla",), "lff": ("LfF",), "groupdro": ("Group DRO", "GroupDRO")}

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
  head = (f"{f['cell']}: {b} {100 * f['b_mean']:.1f}% vs {a} {100 * f['a_mean']:.1f}% "
          f"(they differ in {f['differ_in']})")
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


def cell_unbiased(run: dict, way: str = "val") -> str:
  """The unbiased accuracy at the `way`-selected point, or why there is none."""
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, way)
  return fmt(sel["measures"]["unbiased"]) if sel else "n/a"


def cell_groups(run: dict) -> str:
  """Aligned / conflicting / worst group / test_hard at the val-selected point."""
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, "val")
  if not sel:
    return "n/a"
  m = sel["measures"]
  return " / ".join(fmt(m[k]) for k in ("aligned", "conflicting", "worst_group", "test_hard"))


def cell_selections(run: dict) -> str:
  """Unbiased accuracy under each selection (and each one's λ, for a grid)."""
  text = _status_text(run)
  if text:
    return text
  sels = [_sel(run, w) for w in SELECTION_TITLES]
  accs = " · ".join(fmt(s["measures"]["unbiased"]) if s else "n/a" for s in sels)
  if len(run.get("lam_grid") or ()) > 1:
    accs += " (λ " + " · ".join(f"{s['lam']:g}" if s else "n/a" for s in sels) + ")"
  return accs


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
  lines += [f"Each cell: accuracy in % as mean ± std over {seeds}, at the grid point chosen on "
            "**val** (held out, colored like train) unless the table says otherwise. "
            "**Unbiased** = accuracy on the unbiased test set (test_easy at rho 0.1: every digit "
            "in a uniformly random color); *aligned* / *conflicting* = its examples whose color "
            "is / is not the digit's cue; *worst group* = its lowest (digit x aligned) group; "
            "*test_hard* = every color conflicting (rho 0). Ratios are the bias-conflicting "
            "share of the training set (rho_train = 1 - ratio).", ""]


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
  lines += [f"Every sentence compares two runs that differ in one thing, paired over "
            f"{bench.num_seeds} seed(s) (unbiased accuracy, val-selected), by the paired t-test "
            f"(two-sided, level {verdicts.LEVEL:g}). The pairs are chosen after ranking (the "
            "leader against the runner-up and ERM, the best method told nothing of the bias "
            "against ERM, the oracle against the leader); their p-values are Holm-corrected "
            f"over the section's comparisons of one protocol ({sizes}; the same two runs "
            "counted once), and a difference is a finding only when its Holm p is below the "
            "level; otherwise it is not resolved with these seeds (which is no evidence that "
            "the runs are alike). With one seed there is no test: the sign alone is reported, "
            f"as indicative. Findings: {len(found)} of {len(fs)} comparisons.", ""]
  by_cell = {}
  for f in fs:
    by_cell.setdefault(f["cell"], []).append(statement(f, titles))
  lines += [" ".join(sentences) for sentences in by_cell.values()]
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


def section_cells(res, bench, lines):
  """Per protocol and model: the three tables of accuracies, then the papers'."""
  names = plan.method_entries(bench)
  titles = entries.titles_of(bench)
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      lines += [f"## Protocol `{protocol}`, model `{model}`", "", _settings_line(bench, protocol,
                                                                                   model), ""]
      cell_keys = [plan.Run(protocol, model, r, "").cell for r in bench.ratios]
      header = ["method"] + [pct(r) for r in bench.ratios]
      label = lambda n: titles[n] + (" *(oracle)*" if bench.zoo[n].oracle else "")
      lines += ["**Unbiased test accuracy** (val-selected)", ""]
      lines += table(header, [[label(n)] + [cell_unbiased(_cell_run(res, c, n)) for c in
                                            cell_keys] for n in names])
      lines += ["**Aligned / conflicting / worst group / test_hard** (val-selected)", ""]
      lines += table(header, [[label(n)] + [cell_groups(_cell_run(res, c, n)) for c in
                                            cell_keys] for n in names])
      lines += ["**Unbiased accuracy by selection: " + " · ".join(SELECTION_TITLES.values()) +
                "** (and the λ each chose, for grids of more than one point)", ""]
      lines += table(header, [[label(n)] + [cell_selections(_cell_run(res, c, n)) for c in
                                            cell_keys] for n in names])
      section_published(res, bench, protocol, lines)


def _ours_at(res, bench, protocol: str, entry: str, ratio: float) -> str:
  """Our val-selected unbiased accuracy of `entry` at `ratio` (first model)."""
  model = plan.models_of(bench.protocols[protocol])[0]
  cell = plan.Run(protocol, model, ratio, "").cell
  return cell_unbiased(_cell_run(res, cell, entry))


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
    lines += [f"- {text}" for text in published.UNQUOTED.values()] + [""]
  ran = {published.published_ratio(r) for r in bench.ratios} - {None}
  for t in tables.values():
    ratios = sorted(published.RATIOS, reverse=True)
    rows = []
    for method, cells in t["rows"].items():
      entry = next((e for e, aliases in PUBLISHED_AS.items() if method in aliases), None)
      row = [method + (f" (ours: {bench.zoo[entry].title})" if entry in bench.zoo else "")]
      for r in ratios:
        mean, std = cells[r]
        text = f"{mean:.1f} ± {std:.1f}"
        if entry in plan.method_entries(bench) and r in ran:
          text += f" (ours {_ours_at(res, bench, protocol, entry, r)})"
        row.append(text)
      rows.append(row)
    lines += [f"*{t['paper']}, {t['table']}* ({t['metric']}; read in {t['source']}; "
              f"{t['ratio_convention']})", ""]
    lines += table(["method"] + [pct(r) for r in ratios], rows)
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
       "three ways: val, val_unbiased, oracle (tables above)"],
      ["metric", theirs["metric"], src["metric"], "plain accuracy on the unbiased test set"],
  ])


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
    rows.append([e.title, f"`{e.loss}`{needs}", entries.knows(bench, n), m.lam_means,
                 ", ".join(f"{g:g}" for g in e.lam_grid), m.paper or "—"])
  lines += table(["method", "loss", "knows", "λ means", "λ grid", "paper"], rows)


def section_figure(res, bench, workdir, lines):
  """The accuracy-against-ratio figure, when it was drawn."""
  if (pathlib.Path(workdir) / FIGURE).exists():
    lines += [f"![Unbiased test accuracy against the bias-conflicting ratio]({FIGURE})",
              "*Unbiased test accuracy (val-selected, mean ± std over seeds) against the "
              "bias-conflicting share of the training set, per protocol and model; one color "
              "per method, the grayscale oracle dashed.*", ""]


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
            "cost relative to ERM. Stage times of this run:", ""]
  lines += markdown.stage_table(res["stages"])


def section_made(res, bench, lines):
  """The command, software and device behind the report."""
  lines += ["## How this was made", "",
            f"- `python -m launch.zoo --config=configs/zoo.py:{bench.size} "
            f"--workdir=DIR` (the whole config is in `config.json`; every run is a training "
            "workdir under `runs/<protocol>/<model>/rho<rho_train>/<entry>/`)."]
  lines += markdown.environment_lines(res["environment"], res["generated"])


def render(res, bench, workdir) -> str:
  """benchmark.md's text from the collected record (findings included)."""
  lines = []
  section_header(res, bench, lines)
  section_statements(res, bench, lines)
  section_figure(res, bench, workdir, lines)
  section_cells(res, bench, lines)
  section_methods(res, bench, lines)
  section_cost(res, bench, lines)
  section_made(res, bench, lines)
  return "\n".join(lines) + "\n"


def figure_panels(res, bench) -> dict:
  """{'protocol / model': {entry: (ratios, means, stds)}} of val-selected unbiased accuracy."""
  panels = {}
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      series = {}
      for n in plan.method_entries(bench):
        ratios, means, stds = [], [], []
        for r in sorted(bench.ratios):
          run = _cell_run(res, plan.Run(protocol, model, r, "").cell, n)
          sel = _sel(run, "val") if run["status"] == "done" else None
          stat = sel["measures"]["unbiased"] if sel else None
          ratios.append(r)
          means.append(stat and stat["mean"])
          stds.append(stat and stat["std"])
        series[n] = (ratios, means, stds)
      panels[f"{protocol} / {model}"] = series
  return panels
