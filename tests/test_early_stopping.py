"""ccmnist/zoo/early_stop.py and tools/early_stopping.py on hand-built training logs."""

import json
import pathlib
import sys

import pytest

from ccmnist.zoo import early_stop
from configs import zoo as zoo_config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import early_stopping  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_readings_take_the_first_best_val_epoch_per_seed():
  # Seed 0: best val at epoch 40; seed 1: val ties at 20 and 40, the first wins (JTT's argmax).
  got = early_stop.readings([20, 40, 60], val=[[0.5, 0.6], [0.7, 0.6], [0.6, 0.5]],
                                test=[[0.4, 0.5], [0.8, 0.7], [0.3, 0.9]])
  assert got == {"last": [0.3, 0.9], "stopped": [0.8, 0.5], "best": [0.8, 0.9],
                 "stopped_epoch": [40, 20]}
  with pytest.raises(ValueError, match="must both be"):
    early_stop.readings([20], val=[[0.5, 0.6]], test=[[0.5]])


def test_replicas_are_read_at_the_chosen_lambda_in_seed_order():
  results = {"replicas": [{"replica": 0, "seed": 1, "lam": 0.1}, {"replica": 1, "seed": 0,
                                                                  "lam": 0.1},
                          {"replica": 2, "seed": 0, "lam": 1.0}, {"replica": 3, "seed": 1,
                                                                  "lam": 1.0}]}
  assert early_stop.replicas_at(results, 0.1) == [1, 0]
  assert early_stop.replicas_at(results, 1.0) == [2, 3]
  with pytest.raises(ValueError, match="no replica at λ 10"):
    early_stop.replicas_at(results, 10.0)
  # Two grid points with one λ (another hyper-parameter's grid): their seeds would mix.
  shared = {"replicas": [{"replica": i, "seed": i % 2, "lam": 0.1} for i in range(4)]}
  with pytest.raises(ValueError, match="several grid points share λ 0.1"):
    early_stop.replicas_at(shared, 0.1)


def _write_run(folder, cell, entry, epochs, test, val, val_unbiased):
  run = folder / "runs" / cell / entry
  run.mkdir(parents=True)
  # An epoch without held-out evaluations first (its accuracy is empty), as the loop logs it.
  rows = [{"epoch": 0, "accuracy": {}}] + [
      {"epoch": e, "accuracy": {"test_easy": t, "val": v, "val_unbiased": u}}
      for e, t, v, u in zip(epochs, test, val, val_unbiased)]
  (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (run / "results.json").write_text(json.dumps(
      {"replicas": [{"replica": i, "seed": i, "lam": 0.0} for i in range(len(test[0]))]}))


def test_each_run_stops_on_the_split_its_headline_rule_reads(tmp_path):
  bench = zoo_config.get_config("tiny")
  with bench.unlocked():
    bench.methods = "erm,jtt,dfr,grayscale"
  (tmp_path / "config.json").write_text(json.dumps(bench.to_dict()))
  cell, other = "study/cheater/rho0.95", "study/cheater/rho0.99"
  sel = lambda rule: {rule: {"lam": 0.0, "entry": None}}
  (tmp_path / "selection.json").write_text(json.dumps(
      {f"{cell}/erm": sel("val"), f"{cell}/jtt": sel("group_val"),
       f"{cell}/dfr": sel("group_val"), f"{cell}/grayscale": sel("val"),
       f"{other}/grayscale": sel("val")}))
  (tmp_path / "results.json").write_text(json.dumps({"environment": {"code": "abc1234"}}))
  test = [[0.2, 0.3], [0.6, 0.5], [0.4, 0.4]]
  # ERM (`val`): the biased val peaks at the last epoch; its val_unbiased would have chosen 20.
  _write_run(tmp_path, cell, "erm", [20, 40, 60], test, val=[[0.1, 0.1], [0.2, 0.2],
                                                               [0.9, 0.9]],
             val_unbiased=[[0.9, 0.9], [0.1, 0.1], [0.1, 0.1]])
  # JTT (`group_val`): val_unbiased peaks at 40, where test is best.
  _write_run(tmp_path, cell, "jtt", [20, 40, 60], test, val=[[0.9, 0.9], [0.1, 0.1],
                                                               [0.1, 0.1]],
             val_unbiased=[[0.1, 0.1], [0.8, 0.7], [0.3, 0.2]])
  _write_run(tmp_path, cell, "dfr", [1], [[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]])
  # A run whose results.json is gone: listed as unreadable, and the rest goes on.
  _write_run(tmp_path, other, "jtt_gone", [20, 40], [[0.5, 0.5]] * 2, [[0.5, 0.5]] * 2,
             [[0.5, 0.5]] * 2)
  (tmp_path / "runs" / other / "jtt_gone" / "results.json").unlink()
  selection = json.loads((tmp_path / "selection.json").read_text())
  selection[f"{other}/jtt"] = {"group_val": {"lam": 0.0, "entry": "jtt_gone"}}
  (tmp_path / "selection.json").write_text(json.dumps(selection))
  # The grayscale oracle never sees the ratio: the same run in both cells.
  for c in (cell, other):
    _write_run(tmp_path, c, "grayscale", [20, 40], [[0.9, 0.8], [0.95, 0.9]],
               val=[[0.9, 0.8], [0.8, 0.7]], val_unbiased=[[0.5, 0.5], [0.5, 0.5]])
  got = early_stop.rows(bench, tmp_path, json.loads((tmp_path / "selection.json").read_text()))
  grey = [r for r in got if r["entry"] == "grayscale"]
  assert "same_as" not in grey[0] and grey[1]["same_as"] == f"{cell}/grayscale"
  assert grey[1]["p"] == grey[0]["p"] and grey[1]["stopped_epoch"] == [20, 20]
  gone = next(r for r in got if r["key"] == f"{other}/jtt")
  assert gone["skipped"].startswith("unreadable: FileNotFoundError")
  recs = {r["entry"]: r for r in got if not r["key"].startswith(other)}
  assert recs["erm"]["stop_on"] == "val" and recs["erm"]["stopped_epoch"] == [60, 60]
  assert recs["erm"]["stopped"] == recs["erm"]["last"] == [0.4, 0.4]
  assert recs["jtt"]["stop_on"] == "val_unbiased" and recs["jtt"]["stopped_epoch"] == [40, 40]
  assert recs["jtt"]["stopped"] == [0.6, 0.5] and recs["jtt"]["best"] == [0.6, 0.5]
  assert recs["dfr"]["skipped"] == "1 evaluation(s)"
  # ERM stops at the last epoch at every seed: a difference of 0 by construction, untested.
  # JTT and the grayscale oracle (once) are the Holm family.
  assert recs["erm"]["p"] is None and "family" not in recs["erm"]
  assert recs["jtt"]["family"] == 2 and recs["jtt"]["df"] == 1
  text = "\n".join([early_stop.intro(got), *early_stop.table_lines(got, bench)])
  assert "Holm-corrected over the 2 rows with distinct runs" in text
  assert "(the run at 5%, counted once)" in text
  assert "the last epoch at every seed" in text and "| 40.0 ± 0.0 |" in text
  assert "55.0 ± 7.1 (40, 40)" in text and "+15.0" in text
  # benchmark.md's summary: last → stopped per method and ratio, each on its rule's split.
  lines = []
  early_stop.section({"early_stopping": got}, bench, lines)
  md = "\n".join(lines)
  assert "## Read at the last epoch: what stopping early would change" in md
  assert f"| {bench.zoo.jtt.title} | `group_val`: val_unbiased | 40.0 → 55.0 |" in md
  assert f"| {bench.zoo.erm.title} | `val`: val | 40.0 → 40.0 |" in md
  assert "No change is resolved with these seeds." in md  # Two seeds, t(1): nothing resolved.
  lines = []
  early_stop.section({"early_stopping": [r for r in got if r["entry"] == "dfr"]}, bench, lines)
  assert lines == []


def test_a_folder_without_a_selection_is_refused(tmp_path):
  with pytest.raises(SystemExit, match="holds no selection.json"):
    early_stopping.main([str(tmp_path)])


def test_one_seed_is_shown_without_a_test():
  rec = {"key": "study/cheater/rho0.95/jtt", "entry": "jtt", "stop_on": "val_unbiased",
         "epochs": [20, 40], "last": [0.4], "stopped": [0.6], "best": [0.6],
         "stopped_epoch": [20], "holds": True, "p": None, "family": 0}
  assert early_stop._stat(rec) == "one seed: no test" and early_stop._mark(rec) == ""
  bench = zoo_config.get_config("tiny")
  lines = []
  early_stop.section({"early_stopping": [rec]}, bench, lines)
  assert "No change is resolved with these seeds." in lines and not any(
      line.startswith("Stopping early is ahead") for line in lines)


def test_a_resolved_change_is_named_with_its_ratio_and_size():
  bench = zoo_config.get_config("tiny")
  with bench.unlocked():
    bench.methods = "erm,jtt"
  rec = {"key": "study/cheater/rho0.95/jtt", "entry": "jtt", "rule": "group_val",
         "stop_on": "val_unbiased", "epochs": [20, 40], "last": [0.4, 0.5, 0.45],
         "stopped": [0.6, 0.72, 0.64], "best": [0.6, 0.72, 0.64], "stopped_epoch": [20] * 3,
         "holds": True, "p": 0.01, "family": 1}
  lines = []
  early_stop.section({"early_stopping": [rec]}, bench, lines)
  assert (f"Stopping early is ahead (Holm-corrected) for: {bench.zoo.jtt.title} at 5% "
          "(+20.3 points).") in lines
