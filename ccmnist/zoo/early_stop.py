"""What early stopping would change, read from each run's logged held-out evaluations.

The benchmark reads every run at its last epoch but those of config.stop_early, which its
selection stops (select.py) where the run kept its evaluated epochs. JTT's code stops early, at
the epoch of best worst-group validation accuracy (github.com/anniesch/jtt, analysis.py
`print_accs`), and Group DRO's paper gives strong L2 and early stopping as its two regimes. This
needs no kept epochs: it reads, for each run at its
headline grid point (the λ and family member its headline selection rule chose), the held-out
evaluations its training log holds (metrics.jsonl, every few epochs), and per seed the plain
unbiased test accuracy (test_easy) at:

  last:    the last epoch (what the benchmark reports of a run it does not stop);
  stopped: the evaluated epoch of best plain accuracy on the split the run's headline rule
           selects on, so that no method learns more than its rule gives it: val (colored like
           train, no group labels) under `val`, val_unbiased (group-labelled) under `group_val`.
           The first such epoch on ties, as JTT's argmax. The logs hold no per-group accuracy per
           epoch, so under `group_val` plain accuracy on the unbiased split stands in for the
           rule's worst-group accuracy;
  best:    the evaluated epoch of best test accuracy (an oracle: an upper bound, not a rule).

Only the evaluated epochs can be chosen, so "stopped" is what early stopping at that resolution
gives. tools/early_stopping.py prints the whole table; benchmark.md summarises it (section).
"""

import pathlib

import numpy as np

from ccmnist.eval import run as eval_run
from ccmnist.report import markdown
from ccmnist.report import verdicts
from ccmnist.util import io
from ccmnist.zoo import entries
from ccmnist.zoo import plan

TEST = "test_easy"
STOP_ON = {"val": "val", "group_val": "val_unbiased"}  # The split each headline rule reads.


def curves(run_dir, replicas: list) -> tuple:
  """(epochs [E], {split: [E, len(replicas)]}) of the replicas' held-out accuracies at the
  evaluated epochs (eval/run.py read_curves)."""
  per = [eval_run.read_curves(run_dir, replica=i) for i in replicas]
  return per[0]["epoch"], {s: np.asarray([c[s] for c in per], np.float64).T
                           for s in (TEST, *STOP_ON.values())}


def readings(epochs, val, test) -> dict:
  """Per seed (columns of val, test [E, S]): test accuracy at the last epoch, at the first epoch
  of best val ('stopped', with 'stopped_epoch') and at the best test epoch ('best')."""
  val, test = np.asarray(val, np.float64), np.asarray(test, np.float64)
  if val.shape != test.shape or val.ndim != 2 or val.shape[0] != len(epochs):
    raise ValueError(f"val {val.shape} and test {test.shape} must both be [epochs "
                     f"{len(epochs)}, seeds].")
  pick = np.argmax(val, axis=0)  # First maximum: JTT's np.argmax over epochs.
  cols = np.arange(val.shape[1])
  return {"last": test[-1].tolist(), "stopped": test[pick, cols].tolist(),
          "best": test.max(axis=0).tolist(),
          "stopped_epoch": [int(epochs[i]) for i in pick]}


def replicas_at(results: dict, lam: float) -> list:
  """Replica indices of a run's results.json at grid point `lam`, in seed order; refuses a λ
  no replica has, or one that several grid points share (their seeds would mix)."""
  reps = sorted((r for r in results["replicas"] if r["lam"] == lam), key=lambda r: r["seed"])
  if not reps:
    grid = sorted({r["lam"] for r in results["replicas"]})
    raise ValueError(f"no replica at λ {lam} (grid: {grid}).")
  seeds = [r["seed"] for r in reps]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"several grid points share λ {lam}; read this run by its grid index.")
  return [r["replica"] for r in reps]


def rows(bench, folder, selection: dict) -> list:
  """One record per selected run of a benchmark workdir (or kept folder) and its selection
  (selection.json's dict): its key, entry, headline rule, λ, the evaluated epochs and
  readings(), with stopped - last tested (a paired t-test over seeds, one Holm family; identical
  runs counted once, and runs whose every seed stops at the last epoch left out of it: their
  difference is 0 by construction). Runs with fewer than two evaluations (a refit, an
  identification run evaluated once) or whose files cannot be read are listed with 'skipped'
  and why; runs without a log are left out."""
  folder = pathlib.Path(folder)
  out = []
  for key, rules in selection.items():
    cell, entry = key.rsplit("/", 1)
    rule = entries.headline_rule(bench, entry)
    sel = rules.get(rule)
    if not sel:
      continue
    run_dir = folder / "runs" / cell / (sel.get("entry") or entry)
    if not (run_dir / "metrics.jsonl").exists():
      continue
    rec = {"key": key, "entry": entry, "rule": rule, "lam": sel["lam"], "stop_on": STOP_ON[rule]}
    try:
      rec["epochs"] = eval_run.read_curves(run_dir)["epoch"]
      if len(rec["epochs"]) < 2:
        out.append({**rec, "skipped": f"{len(rec['epochs'])} evaluation(s)"})
        continue
      results = io.read_json(run_dir / "results.json")
      if results is None:
        raise FileNotFoundError(f"{run_dir / 'results.json'} not found")
      idx = replicas_at(results, sel["lam"])
      epochs, splits = curves(run_dir, idx)
      out.append({**rec, **readings(epochs, splits[STOP_ON[rule]], splits[TEST])})
    except (OSError, KeyError, ValueError) as e:  # The report goes on without it.
      out.append({**rec, "epochs": rec.get("epochs", []),
                  "skipped": f"unreadable: {type(e).__name__}: {e}"})
  read = [r for r in out if "skipped" not in r]
  for r in read:
    if r["stopped_epoch"] == [r["epochs"][-1]] * len(r["last"]):
      r["holds"], r["p"] = None, None  # Stops at the last epoch for every seed: nothing to test.
  tested = [r for r in read if "holds" not in r]
  # Identical runs (an oracle that never sees the ratio, at every ratio) count once.
  sig = lambda r: (tuple(r["last"]), tuple(r["stopped"]))
  first = {}
  for r in tested:
    first.setdefault(sig(r), r)
  family = list(first.values())
  judged = dict(zip((r["key"] for r in family), verdicts.judge(
      family, [(verdicts.paired_test(r["last"], r["stopped"]), 1, None) for r in family])))
  for r in tested:
    kept = judged[first[sig(r)]["key"]]
    r.update({k: v for k, v in kept.items() if k not in r})  # The test and its verdict.
    if kept["key"] != r["key"]:
      r["same_as"] = kept["key"]
  return out


def _pct(values) -> str:
  v = 100 * np.asarray(values)
  return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if v.size > 1 else f"{v.mean():.1f}"


def _where(key: str) -> str:
  """'0.5%' of a run key .../rho0.995/entry."""
  return markdown.percent(1.0 - float(key.rsplit("/", 2)[1][len("rho"):]))


def _mark(r: dict) -> str:
  return "" if r["p"] is None else {True: " ▲", False: " ▼", None: ""}[r["holds"]]


def _family(recs: list) -> int:
  return next((r["family"] for r in recs if "family" in r), 0)


def _stat(r: dict) -> str:
  """'t (df), p, Holm p' of a tested record, or why there is none."""
  if r["stopped_epoch"] == [r["epochs"][-1]] * len(r["last"]):
    text = "the last epoch at every seed"
  elif r["p"] is None:
    text = "one seed: no test"
  elif r.get("statistic") is None:
    text = f"{r['test']}, p {r['p']:.2g}, Holm p {r['p_holm']:.2g}"
  else:
    text = f"{r['statistic']:.2f} ({r['df']}), {r['p']:.2g}, {r['p_holm']:.2g}"
  if "same_as" in r:
    text += f" (the run at {_where(r['same_as'])}, counted once)"
  return text


def table_lines(recs: list, bench) -> list:
  """The whole table: a row per run, with the epoch each seed stops at and the test."""
  titles = entries.titles_of(bench)
  rows = []
  for r in recs:
    cell, entry = r["key"].rsplit("/", 1)
    name = f"{titles.get(entry, entry)}, {cell}"
    if "skipped" in r:
      rows.append([name, "–", r["skipped"], *["–"] * 5])
      continue
    diff = 100 * (np.asarray(r["stopped"]) - r["last"]).mean()
    rows.append([name, r["stop_on"], ", ".join(map(str, r["epochs"])), _pct(r["last"]),
                 f"{_pct(r['stopped'])} ({', '.join(map(str, r['stopped_epoch']))})",
                 _pct(r["best"]), f"{diff:+.1f}{_mark(r)}", _stat(r)])
  return markdown.table(["run", "stopped on", "evaluated epochs", "last",
                         "stopped (epoch per seed)", "best (oracle)",
                         "stopped − last (points)", "t (df), p, Holm p"], rows)


def intro(recs: list) -> str:
  return (
      "Plain unbiased test accuracy (test_easy), % over seeds, of each run at its headline grid "
      "point, read at the **last** epoch (what the headline tables report), at the evaluated "
      "epoch of best plain accuracy on the split its headline rule selects on (**stopped**: "
      "`val`, colored like train, under the `val` rule; the group-labelled val_unbiased under "
      "`group_val`, as JTT's code stops on worst-group validation accuracy; the logs hold no "
      "per-group accuracy per epoch, so plain accuracy stands in for it) and at the best test "
      "epoch (**best**, an oracle). stopped − last: paired t-test over seeds, Holm-corrected "
      f"over the {_family(recs)} rows with distinct runs (a run repeated in several cells, such "
      "as an oracle that never sees the ratio, counts once, and a run whose every seed stops at "
      "the last epoch is not tested; level "
      f"{verdicts.LEVEL:g}); ▲ / ▼: stopping early is ahead / behind at that level, no mark: not "
      "resolved with these seeds.")


def section(res, bench, lines) -> None:
  """benchmark.md's summary of res['early_stopping'] (rows()): last → stopped per method and
  ratio, and the resolved changes; nothing when no run logged two evaluations."""
  recs = [r for r in res.get("early_stopping") or [] if "skipped" not in r]
  if not recs:
    return
  titles = entries.titles_of(bench)
  by = {r["key"]: r for r in recs}
  lines += markdown.heading(
      "Read at the last epoch: what stopping early would change",
      "Every number above but those of the methods stopped early is each run at its last epoch. "
      "Its training log holds its held-out accuracies at a few evaluated epochs, which say what "
      "early stopping at those epochs would have given (for a method stopped early: what its "
      "stopping changed, in plain unbiased accuracy). These are readings of the logs, not runs: "
      "the tables above are unchanged. "
      + intro(recs) + " Each cell: last → stopped. The whole table, with the epoch each seed "
      "stops at: `python tools/early_stopping.py DIR`.")
  for protocol in plan.protocol_names(bench):
    for model in plan.models_of(bench.protocols[protocol]):
      cells = [(r, plan.Run(protocol, model, r, "").cell) for r in bench.ratios]
      names = [n for n in plan.method_entries(bench)
               if any(f"{c}/{n}" in by for _, c in cells)]
      if not names:
        continue
      cell_text = lambda r: (f"{100 * np.mean(r['last']):.1f} → "
                             f"{100 * np.mean(r['stopped']):.1f}{_mark(r)}" if r else "—")
      rows = [[titles[n], f"`{entries.headline_rule(bench, n)}`: "
               f"{STOP_ON[entries.headline_rule(bench, n)]}",
               *[cell_text(by.get(f"{c}/{n}")) for _, c in cells]] for n in names]
      lines += [f"Protocol `{protocol}`, model `{model}`:", ""]
      lines += markdown.table(["method", "stopped on", *[markdown.percent(r) for r, _ in cells]],
                              rows)
  for holds, how in ((True, "Stopping early is ahead"), (False, "Stopping early is behind")):
    got = [r for r in recs if r["holds"] is holds and "same_as" not in r and r["p"] is not None]
    if got:
      lines += [f"{how} (Holm-corrected) for: " + "; ".join(
          f"{titles[r['entry']]} at {_where(r['key'])} "
          f"({100 * np.mean(r['stopped']) - 100 * np.mean(r['last']):+.1f} points)"
          for r in got) + ".", ""]
  if not any(r["holds"] is not None and r["p"] is not None for r in recs):
    lines += ["No change is resolved with these seeds.", ""]
