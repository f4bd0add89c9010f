"""What early stopping would change in a benchmark's numbers, read from its runs' logs.

Every benchmark run is read at its last epoch. JTT's code stops early, at the epoch of best
worst-group validation accuracy (github.com/anniesch/jtt, analysis.py `print_accs`), and Group
DRO's paper gives strong L2 and early stopping as its two regimes. This reads, for each run at its
headline grid point (the λ and family member its headline selection rule chose,
selection.json), the held-out evaluations its training log holds (metrics.jsonl, every few
epochs), and per seed the plain unbiased test accuracy (test_easy) at:

  last:    the last epoch (what the benchmark reports);
  stopped: the evaluated epoch of best plain accuracy on the split the run's headline rule
           selects on, so that no method learns more than its rule gives it: val (colored like
           train, no group labels) under `val`, val_unbiased (group-labelled) under `group_val`.
           The first such epoch on ties, as JTT's argmax. The logs hold no per-group accuracy per
           epoch, so under `group_val` plain accuracy on the unbiased split stands in for the
           rule's worst-group accuracy;
  best:    the evaluated epoch of best test accuracy (an oracle: an upper bound, not a rule).

stopped - last is a paired t-test over seeds, Holm-corrected over the table's rows. Only the
evaluated epochs can be chosen, so "stopped" is what early stopping at that resolution gives.

  python tools/early_stopping.py docs/results/benchmark_lff/final [--markdown=OUT.md]
"""

import argparse
import json
import pathlib
import sys
import time

import ml_collections
import numpy as np

from ccmnist.report import markdown as markdown_lib
from ccmnist.report import verdicts
from ccmnist.zoo import entries

TEST = "test_easy"
STOP_ON = {"val": "val", "group_val": "val_unbiased"}  # The split each headline rule reads.


def evaluations(metrics_path) -> tuple:
  """(epochs [E], {split: [E, replicas]}) of the metrics.jsonl lines that hold held-out
  accuracies, in epoch order (a resumed run's repeated epoch: its last line)."""
  by_epoch = {}
  for line in pathlib.Path(metrics_path).read_text().splitlines():
    row = json.loads(line) if line.strip() else {}
    if row.get("accuracy"):
      by_epoch[row["epoch"]] = row["accuracy"]
  epochs = sorted(by_epoch)
  splits = {s: np.asarray([by_epoch[e][s] for e in epochs], np.float64)
            for s in (TEST, *STOP_ON.values())} if epochs else {}
  return epochs, splits


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
  """Replica indices of a run's results.json at grid point `lam`, in seed order."""
  reps = sorted((r for r in results["replicas"] if np.isclose(r["lam"], lam)),
                key=lambda r: r["seed"])
  if not reps:
    grid = sorted({r["lam"] for r in results["replicas"]})
    raise ValueError(f"no replica at λ {lam} (grid: {grid}).")
  return [r["replica"] for r in reps]


def rows(folder) -> list:
  """One record per selected run of a kept benchmark folder: its key, entry, headline rule, λ,
  the evaluated epochs and readings(); runs with fewer than two evaluations are skipped (a
  refit, say), and listed with 'skipped'."""
  folder = pathlib.Path(folder)
  config = json.loads((folder / "config.json").read_text())
  bench = ml_collections.ConfigDict(config)
  selection = json.loads((folder / "selection.json").read_text())
  out = []
  for key, rules in selection.items():
    cell, entry = key.rsplit("/", 1)
    rule = entries.headline_rule(bench, entry)
    sel = rules.get(rule)
    if not sel:
      continue
    run_dir = folder / "runs" / cell / (sel.get("entry") or entry)
    epochs, splits = evaluations(run_dir / "metrics.jsonl")
    rec = {"key": key, "entry": entry, "rule": rule, "lam": sel["lam"], "epochs": epochs,
           "stop_on": STOP_ON[rule]}
    if len(epochs) < 2:
      out.append({**rec, "skipped": f"{len(epochs)} evaluation(s)"})
      continue
    idx = replicas_at(json.loads((run_dir / "results.json").read_text()), sel["lam"])
    out.append({**rec, **readings(epochs, splits[STOP_ON[rule]][:, idx], splits[TEST][:, idx])})
  # Identical runs (an oracle that never sees the ratio, at every ratio) count once.
  sig = lambda r: (tuple(r["last"]), tuple(r["stopped"]))
  first = {}
  for r in out:
    if "skipped" not in r:
      first.setdefault(sig(r), r)
  family = list(first.values())
  judged = dict(zip((r["key"] for r in family), verdicts.judge(
      family, [(verdicts.paired_test(r["last"], r["stopped"]), 1, None) for r in family])))
  for r in out:
    if "skipped" not in r:
      kept = judged[first[sig(r)]["key"]]
      r.update({k: v for k, v in kept.items() if k not in r})  # The test and its verdict.
      if kept["key"] != r["key"]:
        r["same_as"] = kept["key"]
  return out


def _pct(values) -> str:
  v = 100 * np.asarray(values)
  return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if v.size > 1 else f"{v.mean():.1f}"


def markdown(recs: list, bench, *, made_by: str = "") -> str:
  titles = {n: bench.zoo[n].title for n in bench.zoo}
  family = next((r["family"] for r in recs if "family" in r), 0)
  lines = [
      "# Early stopping, read from the training logs", "",
      "Plain unbiased test accuracy (test_easy), % mean ± std over seeds, of each run at its "
      "headline grid point, read at the **last** epoch (what the benchmark reports), at the "
      "evaluated epoch of best plain accuracy on the split its headline rule selects on "
      "(**stopped**: `val`, colored like train, under the `val` rule; the group-labelled "
      "val_unbiased under `group_val`, as JTT's code stops on worst-group validation accuracy) "
      "and at the best test epoch (**best**, an oracle). stopped − last: paired t-test over "
      f"seeds, Holm-corrected over the {family} rows with distinct runs (a run repeated in "
      "several cells, such as an oracle that never sees the ratio, counts once; level "
      f"{verdicts.LEVEL:g}).", "",
      "| run | stopped on | evaluated epochs | last | stopped (epoch per seed) | best (oracle) | "
      "stopped − last (points) | t (df), p, Holm p |", "|---|---|---|---|---|---|---|---|"]
  for r in recs:
    cell, entry = r["key"].rsplit("/", 1)
    name = f"{titles.get(entry, entry)}, {cell}"
    if "skipped" in r:
      lines.append(f"| {name} | – | {r['skipped']} | – | – | – | – | – |")
      continue
    diff = 100 * (np.asarray(r["stopped"]) - r["last"]).mean()
    if r["stopped_epoch"] == [r["epochs"][-1]] * len(r["last"]):
      stat = "the last epoch at every seed"
    elif r.get("statistic") is None:
      stat = f"{r['test']}, p {r['p']:.2g}, Holm p {r['p_holm']:.2g}"
    else:
      stat = f"{r['statistic']:.2f} ({r['df']}), {r['p']:.2g}, {r['p_holm']:.2g}"
    if "same_as" in r:
      stat += f" (the run of {r['same_as'].rsplit('/', 2)[1]}, counted once)"
    verdict = {True: " ▲", False: " ▼", None: ""}[r["holds"]]
    lines.append(
        f"| {name} | {r['stop_on']} | {', '.join(map(str, r['epochs']))} | {_pct(r['last'])} | "
        f"{_pct(r['stopped'])} ({', '.join(map(str, r['stopped_epoch']))}) | "
        f"{_pct(r['best'])} | {diff:+.1f}{verdict} | {stat} |")
  lines += ["", "▲ / ▼: stopping early is ahead / behind the last epoch at the Holm-corrected "
            "level; no mark: not resolved with these seeds.", ""]
  if made_by:
    lines += [made_by, ""]
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("folder", help="A benchmark folder kept by launch.zoo --keep (or its workdir).")
  p.add_argument("--markdown", default="", help="Also write the table here.")
  p.add_argument("--json_out", default="", help="Also write the records here.")
  a = p.parse_args(argv)
  folder = pathlib.Path(a.folder)
  if not (folder / "selection.json").exists():
    raise SystemExit(f"{folder} holds no selection.json; name a benchmark folder whose select "
                     "stage has run.")
  recs = rows(folder)
  bench = ml_collections.ConfigDict(json.loads((folder / "config.json").read_text()))
  code = json.loads((folder / "results.json").read_text()).get("environment", {}).get("code")
  args = " ".join(sys.argv[1:] if argv is None else argv)
  made_by = (f"Made by `python tools/early_stopping.py {args}` on {time.strftime('%Y-%m-%d')} "
             f"(code {markdown_lib.code_version()}), from a benchmark report made on code {code}.")
  text = markdown(recs, bench, made_by=made_by)
  print(text)
  if a.markdown:
    pathlib.Path(a.markdown).write_text(text)
  if a.json_out:
    pathlib.Path(a.json_out).write_text(json.dumps(recs, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
