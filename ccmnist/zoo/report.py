"""The benchmark's results.json and benchmark.md, from what its stages wrote (plan.py's layout).

Every accuracy is mean +- std over seeds at the grid point a selection chose (val, colored like
train, unless a table says otherwise). Every statement compares two runs that differ in one
thing (the method, the data, or the ratio), paired by seed, with report/verdicts.py's rule: a
difference within 2 standard errors of the paired seed differences is not a finding.
"""

import pathlib
import time

import ml_collections
import numpy as np

from ccmnist import layout
from ccmnist import plots
from ccmnist.zoo import cost as cost_lib
from ccmnist.zoo import evaluate
from ccmnist.zoo import plan
from ccmnist.zoo import published
from ccmnist.plots import zoo as zoo_plots
from ccmnist.report import report as study_report
from ccmnist.report import verdicts
from ccmnist.train import methods as methods_lib
from ccmnist.train import runs as runs_lib
from ccmnist.util import io

FIGURE = "figures/unbiased_vs_ratio.png"
SELECTION_FILE = "selection.json"
FAILED_FILE = "failed.json"
SELECTION_TITLES = {"val": "val (colored like train)", "val_unbiased": "val_unbiased (rho 0.1)",
                    "oracle": "oracle (the unbiased test set)"}
# The names the papers' tables give our entries' methods.
PUBLISHED_AS = {"erm": ("Vanilla",), "lff": ("LfF",), "groupdro": ("Group DRO", "GroupDRO")}


def fmt(stat) -> str:
  return study_report.fmt(stat)


def pct(ratio: float) -> str:
  return f"{100 * ratio:g}%"


# ---------------------------------------------------------------- collecting

def read_selection(workdir) -> dict:
  return io.read_json(pathlib.Path(workdir) / SELECTION_FILE, default={})


def knows(bench, entry: str) -> str:
  e = bench.zoo[entry]
  return e.knows or method_of(bench, entry).knows


def method_of(bench, entry: str):
  """The methods.Method an entry trains (or refits) with."""
  e = bench.zoo[entry]
  try:
    return methods_lib.get(e.loss)
  except ValueError:
    return methods_lib.Method(name=e.loss, loss=None, knows="(method not registered)")


def collect_run(bench, workdir, run: plan.Run, selection: dict) -> dict:
  """Everything the benchmark knows of one run: status, cost, measures, selections."""
  workdir = pathlib.Path(workdir)
  rdir = plan.run_dir(workdir, run)
  entry = bench.zoo[run.entry]
  out = {"protocol": run.protocol, "model": run.model, "ratio": run.ratio, "rho": run.rho,
         "entry": run.entry, "loss": entry.loss, "kind": plan.kind_of(bench, run.entry),
         "dir": str(rdir.relative_to(workdir)), "status": "missing"}
  failed = io.read_json(rdir / FAILED_FILE)
  if failed is not None:
    return {**out, "status": "failed", "error": failed.get("error")}
  results = io.read_json(rdir / "results.json")
  if results is None:
    return out
  config = runs_lib.load_config(rdir)
  timing = io.read_json(rdir / cost_lib.TIME_FILE) or {}
  out.update(status="done", epochs=config.train.epochs, num_replicas=len(runs_lib.replicas(config)),
             lam_grid=list(runs_lib.lam_grid(config)),
             cost=cost_lib.run_cost(rdir, config, timing.get("wall_s")))
  ev = io.read_json(rdir / evaluate.EVAL_FILE)
  if ev is not None:
    out.update(grid=ev["grid"], replicas=ev["replicas"])
  out["selection"] = selection.get(run.key)
  return out


def planned_runs(bench) -> list:
  """The runs of bench.project_to (or of bench itself when it names none), as cost.project
  takes them."""
  target = bench.project_to if len(bench.project_to) else bench
  target = _as_bench(target, bench.seed)
  out = []
  for run in plan.all_runs(target):
    entry = target.zoo[run.entry]
    config = plan.run_config(target, run, ".")
    out.append({"key": run.key, "model": run.model, "loss": entry.loss,
                "kind": plan.kind_of(target, run.entry),
                "examples": cost_lib.examples(config)})
  return out


def _as_bench(target, seed):
  c = ml_collections.ConfigDict(target.to_dict())
  if "seed" not in c:
    c.seed = seed
  return c


def measured_costs(res: dict, workdir) -> list:
  """Measured costs of every finished run and cost probe, as cost.rates takes them."""
  out = [{"model": r["model"], "loss": r["loss"], "kind": r["kind"], **r["cost"]}
         for r in res["runs"].values() if r["status"] == "done" and r.get("cost")]
  for path in sorted((pathlib.Path(workdir) / "cost_probe").glob("*/*/results.json")):
    config = runs_lib.load_config(path.parent)
    timing = io.read_json(path.parent / cost_lib.TIME_FILE) or {}
    out.append({"model": config.model.name, "loss": config.loss.name, "kind": "train",
                "probe": True, **cost_lib.run_cost(path.parent, config, timing.get("wall_s"))})
  return out


def collect(bench, workdir) -> dict:
  workdir = pathlib.Path(workdir)
  selection = read_selection(workdir)
  runs = {run.key: collect_run(bench, workdir, run, selection) for run in plan.all_runs(bench)}
  res = {"config": bench.to_dict(), "profile": bench.size, "runs": runs,
         "stages": layout.read_stage_times(workdir), "environment": study_report.environment(),
         "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
         "published": {"tables": published.tables(), "unquoted": dict(published.UNQUOTED),
                       "protocols": published.PROTOCOLS}}
  measured = measured_costs(res, workdir)
  res["cost"] = {
      "measured": measured,
      "train_wall_s": float(sum(m["wall_s"] or 0.0 for m in measured)),
      "projected_profile": "full" if len(bench.project_to) else bench.size,
      "projection": cost_lib.project(measured, planned_runs(bench))}
  res["findings"] = findings(res, bench)
  return res


# ---------------------------------------------------------------- statements

def _values(res, key: str, way: str = "val", measure: str = "unbiased"):
  run = res["runs"].get(key)
  sel = run and run.get("selection") and run["selection"].get(way)
  if not sel:
    return None
  values = sel["measures"][measure]["values"]
  return None if any(v is None for v in values) else values


def compare(res, key_a: str, key_b: str, *, differ_in: str, kind: str, way: str = "val",
            measure: str = "unbiased", n_items: int | None = None) -> dict | None:
  """The paired seed difference b - a of `measure` at each run's `way`-selected grid point, and
  its verdict (holds True: b is ahead, False: a is ahead, None: within the seed spread); None
  when either run has no numbers."""
  a, b = _values(res, key_a, way, measure), _values(res, key_b, way, measure)
  if a is None or b is None or len(a) != len(b):
    return None
  diff = verdicts.paired_difference(a, b)
  sampling = (verdicts.sampling_se(float(np.mean(a)), float(np.mean(b)), n_items)
              if diff["n"] == 1 and n_items else None)
  holds, strength = verdicts.decide(diff, direction=1, sampling=sampling)
  return {"kind": kind, "a": key_a, "b": key_b, "differ_in": differ_in, "measure": measure,
          "selection": way, "a_mean": float(np.mean(a)), "b_mean": float(np.mean(b)),
          "diff": diff, "holds": holds, "strength": strength}


def _mean(res, key, way="val", measure="unbiased"):
  v = _values(res, key, way, measure)
  return None if v is None else float(np.mean(v))


def findings(res, bench) -> list:
  """Measured statements, each between two runs that differ in one thing (see compare):

  per cell (protocol, model, ratio): the leader vs the runner-up and vs ERM (the method alone),
  the best method told nothing of the bias vs ERM,
  counterfactual consistency vs its augmentation-only ablation (the loss alone), the grayscale
  oracle vs the leader (oracle entries are ranked apart); per protocol and model: ERM at the
  largest vs the smallest ratio (the ratio alone)."""
  names = [n for n in plan.method_entries(bench)]
  oracle = {n for n in names if bench.zoo[n].oracle}
  out = []
  for protocol, model, ratio in plan.cells(bench):
    cell = plan.Run(protocol, model, ratio, "").cell
    n_test = bench.protocols[protocol].data.test_size
    key = lambda e, cell=cell: f"{cell}/{e}"
    ranked = sorted((n for n in names if n not in oracle and _mean(res, key(n)) is not None),
                    key=lambda n: -_mean(res, key(n)))
    pairs = []
    if len(ranked) >= 2:
      pairs.append((ranked[1], ranked[0], "the method", "lead"))
    if ranked and "erm" in ranked and ranked[0] != "erm" and ranked[1:2] != ["erm"]:
      pairs.append(("erm", ranked[0], "the method", "over_erm"))
    unaware = [n for n in ranked if n != "erm" and knows(bench, n).startswith("nothing")]
    if "erm" in ranked and unaware and ranked[0] != unaware[0]:  # The best told nothing.
      pairs.append(("erm", unaware[0], "the method (told nothing of the bias)", "unaware"))
    if "consistency" in names and "cf_augment" in names:
      pairs.append(("cf_augment", "consistency", "the loss (same recolored partners)",
                    "loss_vs_data"))
    for o in sorted(oracle):
      if ranked:
        pairs.append((ranked[0], o, "the data (an oracle's)", "oracle"))
    for a, b, differ_in, kind in pairs:
      f = compare(res, key(a), key(b), differ_in=differ_in, kind=kind, n_items=n_test)
      if f is not None:
        out.append({**f, "cell": cell})
  if "erm" in names and len(bench.ratios) > 1:
    hi, lo = max(bench.ratios), min(bench.ratios)
    for protocol in plan.protocol_names(bench):
      for model in plan.models_of(bench.protocols[protocol]):
        a = plan.Run(protocol, model, lo, "erm").key
        b = plan.Run(protocol, model, hi, "erm").key
        f = compare(res, a, b, differ_in=f"the ratio ({pct(lo)} vs {pct(hi)})", kind="ratio",
                    n_items=bench.protocols[protocol].data.test_size)
        if f is not None:
          out.append({**f, "cell": f"{protocol}/{model}"})
  return out


def _entry_of(key: str) -> str:
  return key.rsplit("/", 1)[1]


def statement(f: dict, titles: dict) -> str:
  """One measured statement as a sentence."""
  a, b = titles.get(_entry_of(f["a"]), _entry_of(f["a"])), titles.get(_entry_of(f["b"]),
                                                                         _entry_of(f["b"]))
  if f["kind"] == "ratio":
    a, b = f"ERM at {f['a'].split('/')[2]}", f"ERM at {f['b'].split('/')[2]}"
  d = 100 * f["diff"]["mean"]
  head = (f"{f['cell']}: {b} {100 * f['b_mean']:.1f}% vs {a} {100 * f['a_mean']:.1f}% "
          f"(they differ in {f['differ_in']})")
  if f["holds"] is True:
    return f"{head}: {b} is ahead by {d:.1f} points ({f['strength']})."
  if f["holds"] is False:
    return f"{head}: {a} is ahead by {-d:.1f} points ({f['strength']})."
  return (f"{head}: the difference, {d:+.1f} points, is within the seed spread "
          f"({f['strength']}), so it is not a finding.")


# ---------------------------------------------------------------- markdown

def table(header, rows) -> list:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def _cell_run(res, cell_key: str, entry: str) -> dict:
  return res["runs"].get(f"{cell_key}/{entry}") or {"status": "missing"}


def _status_text(run: dict) -> str | None:
  if run["status"] == "failed":
    return "diverged" if "Loss became" in (run.get("error") or "") else "failed"
  if run["status"] == "missing" or not run.get("selection"):
    return "—"
  return None


def _sel(run: dict, way: str):
  return (run.get("selection") or {}).get(way)


def cell_unbiased(run: dict, way: str = "val") -> str:
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, way)
  return fmt(sel["measures"]["unbiased"]) if sel else "n/a"


def cell_groups(run: dict) -> str:
  text = _status_text(run)
  if text:
    return text
  sel = _sel(run, "val")
  if not sel:
    return "n/a"
  m = sel["measures"]
  return " / ".join(fmt(m[k]) for k in ("aligned", "conflicting", "worst_group", "test_hard"))


def cell_selections(run: dict) -> str:
  text = _status_text(run)
  if text:
    return text
  sels = [_sel(run, w) for w in SELECTION_TITLES]
  accs = " · ".join(fmt(s["measures"]["unbiased"]) if s else "n/a" for s in sels)
  if len(run.get("lam_grid") or ()) > 1:
    accs += " (λ " + " · ".join(f"{s['lam']:g}" if s else "n/a" for s in sels) + ")"
  return accs


def titles_of(bench) -> dict:
  return {n: bench.zoo[n].title for n in bench.zoo}


def section_header(res, bench, lines):
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
  titles = titles_of(bench)
  fs = res["findings"]
  lines += ["## What the measurements say", ""]
  if not fs:
    lines += ["No two runs could be compared (missing runs).", ""]
    return
  found = [f for f in fs if f["holds"] is not None]
  lines += [f"Every sentence compares two runs that differ in one thing, paired over seeds "
            f"(unbiased accuracy, val-selected); with {bench.num_seeds} seeds a difference is a "
            "finding only beyond 2 standard errors of the paired seed differences, and one within "
            f"the seed spread is said to be no finding. Findings: {len(found)} of {len(fs)} "
            "comparisons.", ""]
  by_cell = {}
  for f in fs:
    by_cell.setdefault(f["cell"], []).append(statement(f, titles))
  lines += [" ".join(sentences) for sentences in by_cell.values()]
  lines += [""]


def _settings_line(bench, protocol: str, model: str) -> str:
  p = bench.protocols[protocol]
  o, t, d = p.optim, p.train, p.data
  return (f"{p.title}; model `{model}`; {d.train_size} training digits; {t.epochs} epochs, "
          f"batch {t.batch_size}, {o.name} lr {o.lr:g}"
          f"{f' weight decay {o.weight_decay:g}' if o.weight_decay else ''}; {bench.num_seeds} "
          f"seeds; held out: val {d.val_size}, val_unbiased {d.val_unbiased_size}, val_balanced "
          f"{d.val_balanced_size}; test {d.test_size} digits.")


def section_cells(res, bench, lines):
  names = plan.method_entries(bench)
  titles = titles_of(bench)
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
  ran = {published_ratio(r) for r in bench.ratios} - {None}
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


def published_ratio(ratio):
  try:
    return next(r for r in published.RATIOS if abs(r - ratio) < 1e-9)
  except StopIteration:
    return None


def section_methods(res, bench, lines):
  lines += ["## The methods and what each knows", "",
            "What each is told about the bias (the method's `knows`, or its entry's when its data "
            "knows more), what λ means and the grid each profile trains as replicas of one "
            "program.", ""]
  rows = []
  for n in plan.method_entries(bench):
    e = bench.zoo[n]
    m = method_of(bench, n)
    needs = f"; needs the `{e.needs}` run" if e.needs else ""
    rows.append([e.title, f"`{e.loss}`{needs}", knows(bench, n), m.lam_means,
                 ", ".join(f"{g:g}" for g in e.lam_grid), m.paper or "—"])
  lines += table(["method", "loss", "knows", "λ means", "λ grid", "paper"], rows)


def section_figure(res, bench, workdir, lines):
  if (pathlib.Path(workdir) / FIGURE).exists():
    lines += [f"![Unbiased test accuracy against the bias-conflicting ratio]({FIGURE})",
              "*Unbiased test accuracy (val-selected, mean ± std over seeds) against the "
              "bias-conflicting share of the training set, per protocol and model; one color "
              "per method, the grayscale oracle dashed.*", ""]


def _hours(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


def section_cost(res, bench, lines):
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
  rows = [[s, f"{t['seconds']:.1f}"] for s, t in res["stages"].items()]
  total = sum(t["seconds"] for t in res["stages"].values())
  lines += table(["stage", "wall time (s)"], rows + [["total", f"{total:.1f}"]])


def section_made(res, bench, lines):
  env = res["environment"]
  lines += ["## How this was made", "",
            f"- `python -m launch.zoo --config=configs/zoo.py:{bench.size} "
            f"--workdir=DIR` (the whole config is in `config.json`; every run is a training "
            "workdir under `runs/<protocol>/<model>/rho<rho_train>/<entry>/`).",
            f"- jax {env['jax']}, flax {env['flax']}, optax {env['optax']}, Python "
            f"{env['python']}, {env['device']} x{env['device_count']}, {env['platform']}.",
            f"- generated {res['generated']}.", ""]


def render(res, bench, workdir) -> str:
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


def write_report(bench, workdir, *, figure: bool = True) -> dict:
  """Writes DIR/results.json, DIR/benchmark.md and (figure) DIR/figures/; returns results.json's
  dict."""
  workdir = pathlib.Path(workdir)
  res = collect(bench, workdir)
  if figure:
    fig = zoo_plots.accuracy_vs_ratio_figure(figure_panels(res, bench),
                                               titles=titles_of(bench))
    plots.save_figure(fig, workdir / FIGURE)
  io.write_json(workdir / "results.json", res, indent=1)
  io.write_text(workdir / "benchmark.md", render(res, bench, workdir))
  return res
