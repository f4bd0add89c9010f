"""The benchmark's report in pieces: a run's record, the comparisons between runs, and the cells
and statements written from hand-made records."""

import json

import pytest

from ccmnist.plots import zoo as zoo_plots
from ccmnist.report import verdicts
from ccmnist.zoo import collect
from ccmnist.zoo import entries
from ccmnist.zoo import evaluate
from ccmnist.zoo import findings
from ccmnist.zoo import plan
from ccmnist.zoo import published
from ccmnist.zoo import sections
from configs import zoo as zoo_config


def small_bench():
  c = zoo_config.get_config("tiny")
  with c.unlocked():
    c.methods = "erm,groupdro,jtt,grayscale"
    c.run_protocols = "study"
  return c


def _stat(values):
  mean = sum(values) / len(values)
  return {"mean": mean, "std": 0.0, "n": len(values), "values": values}


def _run(values, lams=(0.0,), status="done", rules=None):
  """A collected run record whose every measure at every selection rule is `values` (per seed),
  but where `rules` ({rule: values}) says otherwise; the oracle picks the last λ."""
  rules = rules or {}
  sels = {}
  for way in ("val", "group_val", "oracle"):
    v = rules.get(way, values)
    sels[way] = {"lam": lams[-1] if way == "oracle" else lams[0],
                 "measures": {m: _stat(v) for m in evaluate.MEASURES}}
  return {"status": status, "lam_grid": list(lams), "selection": sels}


def hand_made(bench, values: dict, rules=None, protocol="study", model="cheater") -> dict:
  cell = plan.Run(protocol, model, 0.05, "").cell
  rules = rules or {}
  return {"runs": {f"{cell}/{e}": _run(v, rules=rules.get(e)) for e, v in values.items()}}


VALUES = {"erm": [0.20, 0.22], "groupdro": [0.60, 0.63], "jtt": [0.40, 0.41],
          "grayscale": [0.90, 0.91]}
# Under `val` JTT would lead and Group DRO trail ERM: the group-aware methods are read at
# group_val, so these never reach the headline.
AT_VAL = {"groupdro": {"val": [0.10, 0.12]}, "jtt": {"val": [0.95, 0.97]}}


def test_findings_compare_the_leader_erm_the_best_told_nothing_and_the_oracle():
  bench = small_bench()
  got = findings.findings(hand_made(bench, VALUES, AT_VAL), bench)
  pairs = [(f["kind"], f["a"].rsplit("/", 1)[1], f["b"].rsplit("/", 1)[1], f["selection"])
           for f in got]
  assert pairs == [("lead", "jtt", "groupdro", "group_val"),
                   ("over_erm", "erm", "groupdro", "group_val"),
                   ("unaware", "erm", "jtt", "group_val"),
                   ("oracle", "groupdro", "grayscale", "group_val")]
  assert all(f["holds"] is True and f["cell"] == "study/cheater/rho0.95" for f in got)
  assert all(f["measure"] == "group_balanced" for f in got)
  assert got[0]["diff"]["mean"] == pytest.approx(0.21)
  # One protocol, one family of 4: each p Holm-adjusted over the 4 (2 seeds: paired t, df 1).
  assert all(f["family"] == 4 and f["df"] == 1 and f["test"] == "paired t" for f in got)
  assert [f["p_holm"] for f in got] == pytest.approx(verdicts.holm([f["p"] for f in got]))
  assert got[0]["a_values"] == VALUES["jtt"] and got[0]["b_values"] == VALUES["groupdro"]
  # The best told nothing (JTT) against the best given group labels is the leader pair again:
  # counted once, the second reading noted.
  assert "the best told nothing of the bias against the best given group labels" in " ".join(
      got[0]["also_differ_in"])
  # A run without numbers leaves its comparisons out.
  fewer = findings.findings(hand_made(bench, {"erm": VALUES["erm"]}), bench)
  assert fewer == []


def test_findings_test_the_best_told_nothing_against_the_best_given_group_labels():
  bench = small_bench()
  with bench.unlocked():
    bench.methods = "erm,consistency,groupdro,jtt"
  values = {"erm": [0.20, 0.22], "consistency": [0.90, 0.92], "groupdro": [0.50, 0.53],
            "jtt": [0.60, 0.61]}
  got = findings.findings(hand_made(bench, values), bench)
  pairs = {f["kind"]: (f["a"].rsplit("/", 1)[1], f["b"].rsplit("/", 1)[1], f["selection"])
           for f in got}
  # Ranked consistency > JTT > Group DRO > ERM: JTT is the runner-up, and the pair of the best
  # told nothing and the best with group labels is ordered as ranked, read under group_val.
  assert pairs["labels"] == ("groupdro", "jtt", "group_val")
  assert pairs["lead"] == ("jtt", "consistency", "group_val")
  labels = next(f for f in got if f["kind"] == "labels")
  assert labels["diff"]["mean"] == pytest.approx(0.09)
  assert labels["family"] == len(got)
  # ERM is told nothing too: when it is the best of those, it meets the best with group labels.
  values.update(erm=[0.55, 0.56], jtt=[0.30, 0.31])
  got = findings.findings(hand_made(bench, values), bench)
  labels = next(f for f in got if f["kind"] == "labels")
  assert (labels["a"].rsplit("/", 1)[1], labels["b"].rsplit("/", 1)[1]) == ("groupdro", "erm")


def test_statements_say_who_is_ahead_by_how_much():
  bench = small_bench()
  res = hand_made(bench, VALUES)
  res["findings"] = findings.findings(res, bench)
  text = sections.statement(res["findings"][0], entries.titles_of(bench))
  assert text.startswith(f"study/cheater/rho0.95, group-balanced accuracy (group_val-selected): "
                         f"{bench.zoo.groupdro.title} 61.5% vs {bench.zoo.jtt.title} 40.5%")
  f = res["findings"][0]
  assert f"is ahead by 21.0 points (paired t(1) = {f['statistic']:.2f}, p = " in text
  assert f"Holm p = {f['p_holm']:.2g})" in text
  lines = []
  sections.section_statements(res, bench, lines)
  assert "Findings: 4 of 4 comparisons." in lines[2]
  assert "chosen after ranking" in lines[2] and "Holm-corrected" in lines[2]
  assert "(study: 4;" in lines[2]
  # Three noisy seeds: the leader's 2 points are not resolved.
  noisy = hand_made(bench, {"erm": [0.20, 0.22, 0.21], "groupdro": [0.60, 0.40, 0.55],
                            "jtt": [0.45, 0.50, 0.54]})
  lead = findings.findings(noisy, bench)[0]
  assert lead["kind"] == "lead" and lead["holds"] is None
  text = sections.statement(lead, entries.titles_of(bench))
  assert "is not resolved with 3 seeds (paired t(2) = " in text and "Holm p = " in text
  read_twice = sections.statement({**lead, "also_differ_in": ["the loss"]},
                                  entries.titles_of(bench))
  assert "(they differ in the method: the loss)" in read_twice


def test_identical_runs_in_two_cells_are_one_comparison():
  bench = small_bench()
  with bench.unlocked():
    bench.ratios = (0.01, 0.05)
  res = {"runs": {}}
  for ratio, erm in ((0.01, [0.10, 0.12]), (0.05, [0.20, 0.22])):
    cell = plan.Run("study", "cheater", ratio, "").cell
    # The same two color-blind runs at every ratio (their data differ only in color).
    res["runs"].update({f"{cell}/erm": _run(erm), f"{cell}/groupdro": _run([0.80, 0.81]),
                        f"{cell}/grayscale": _run([0.90, 0.93])})
  got = findings.findings(res, bench)
  oracle = [f for f in got if f["kind"] == "oracle"]
  assert len(oracle) == 1 and oracle[0]["also"] == [
      "study/cheater/rho0.95/groupdro vs study/cheater/rho0.95/grayscale"]
  # 2 cells x (lead, oracle) + the ratio comparison, less the duplicate: 4 in the family.
  assert len(got) == 4 and all(f["family"] == 4 for f in got)


def test_cells_say_why_a_run_has_no_number():
  assert sections.cell_unbiased({"status": "failed", "error": "Loss became nan"}) == "diverged"
  assert sections.cell_unbiased({"status": "failed", "error": "needs the erm run"}) == "failed"
  assert sections.cell_unbiased({"status": "missing"}) == "—"
  run = _run([0.5, 0.6], lams=(0.1, 1.0), rules={"group_val": [0.7, 0.7]})
  del run["selection"]["oracle"]
  assert sections.cell_unbiased(run) == "55.0 ± 0.0"
  assert sections.cell_measure(run, "group_val") == "70.0 ± 0.0"
  assert sections.cell_measures(run) == " / ".join(["55.0 ± 0.0"] * 4)
  assert sections.cell_groups(run, "group_val") == " / ".join(["70.0 ± 0.0"] * 3)
  assert sections.cell_selections(run) == "55.0 ± 0.0 · 70.0 ± 0.0 · n/a (λ 0.1 · 0.1 · n/a)"


def test_figure_panels_hold_each_entrys_headline_mean():
  bench = small_bench()
  panels = sections.figure_panels(hand_made(bench, VALUES, AT_VAL), bench)
  ratios, means, _ = panels["study / cheater"]["groupdro"]
  assert ratios == [0.05] and means == [pytest.approx(0.615)]  # group_val, not val's 0.11.


def test_the_headline_table_ranks_by_the_headline_rule_with_oracles_apart():
  bench = small_bench()
  lines = []
  sections.section_cells(hand_made(bench, VALUES, AT_VAL), bench, lines)
  rows = [ln for ln in lines if ln.startswith("| 1 |") or ln.startswith("| 2 |")
          or ln.startswith("| 3 |")]
  n = bench.protocols.study.data
  assert rows[:3] == [
      f"| 1 | Group DRO | group labels | `group_val` | {n.train_size + n.val_unbiased_size} | "
      "61.5 ± 0.0 |",
      f"| 2 | JTT | nothing | `group_val` | {n.val_unbiased_size} | 40.5 ± 0.0 |",
      "| 3 | ERM | nothing | `val` | 0 | 21.0 ± 0.0 |"]
  oracle_block = lines[lines.index(next(ln for ln in lines if "Oracles, ranked apart" in ln)):]
  assert oracle_block[4].startswith("| 1 | grayscale oracle")


def test_ranking_changes_name_the_cell_the_rules_and_the_top_three():
  bench = small_bench()
  changes = sections.ranking_changes(hand_made(bench, VALUES, AT_VAL), bench)
  got = {(c["a"], c["b"]): (c["top_a"], c["top_b"], c["first"], c["moved"]) for c in changes}
  assert set(got) == {("val", "group_val"), ("val", "oracle")}  # group_val and oracle agree.
  assert got[("val", "group_val")] == (["jtt", "erm", "groupdro"], ["groupdro", "jtt", "erm"],
                                       1, 3)
  # Orders that part below the top three are listed too, with the place where they part.
  lower = {"groupdro": [0.6, 0.6], "jtt": [0.5, 0.5], "erm": [0.2, 0.2], "lff": [0.1, 0.1],
           "irm": [0.05, 0.05], "grayscale": [0.9, 0.9]}
  small = small_bench()
  with small.unlocked():
    small.methods = ",".join(lower)
  (change,) = [c for c in sections.ranking_changes(
      hand_made(small, lower, {"irm": {"oracle": [0.15, 0.15]}}), small) if c["a"] == "val"]
  assert change["b"] == "oracle" and change["top_a"] == change["top_b"]
  assert change["first"] == 4 and change["moved"] == 2 and change["n"] == 5
  assert sections.ranking_changes(hand_made(bench, VALUES), bench) == []
  lines = []
  sections.section_rankings(hand_made(bench, VALUES, AT_VAL), bench, lines)
  row = "| study/cheater/rho0.95 | `val` vs `group_val` | JTT, ERM, Group DRO |"
  assert row in "\n".join(lines)


def test_the_published_tables_print_with_their_source_and_ours_beside():
  bench = small_bench()
  with bench.unlocked():
    bench.run_protocols = "lff"
  lines = []
  sections.section_published(hand_made(bench, VALUES, AT_VAL, protocol="lff", model="lff_mlp"),
                             bench, "lff", lines)
  text = "\n".join(lines)
  assert "| ERM (vanilla) (ours: ERM, `val`) | 82.17 · ours 21.0 ± 0.0, n=2 | 65.86 |" in text
  assert "| LfF | 85.39 (0.94) | 80.48 (0.45) | 74.01 (2.21) | 63.39 (1.97) |" in text
  assert "Group DRO (ours: Group DRO, `group_val`) | 84.40 · ours 61.5 ± 0.0, n=2 |" in text
  assert text.count("Source: ") == len(published.TABLES) and "Sreelatha" in text
  assert "last step's model" in text and "best test accuracy" in text
  assert "No published number is quoted yet" not in text


def test_a_runs_record_says_failed_or_missing_from_its_files(tmp_path):
  bench = small_bench()
  run = plan.all_runs(bench)[0]
  assert collect.collect_run(bench, tmp_path, run, {})["status"] == "missing"
  rdir = plan.run_dir(tmp_path, run)
  rdir.mkdir(parents=True)
  (rdir / collect.FAILED_FILE).write_text(json.dumps({"error": "Loss became inf"}))
  record = collect.collect_run(bench, tmp_path, run, {})
  assert record["status"] == "failed" and record["error"] == "Loss became inf"
  assert record["entry"] == run.entry and record["dir"] == str(rdir.relative_to(tmp_path))


def test_a_refit_entry_is_described_by_its_registered_method():
  bench = zoo_config.get_config("tiny")
  dfr = entries.method_of(bench, "dfr")
  assert dfr.kind == "refit" and "val_balanced" in dfr.knows
  assert entries.knows(bench, "erm").startswith("nothing")
  assert entries.titles_of(bench)["erm"] == bench.zoo.erm.title


def test_told_sorts_every_entry_and_the_figure_families_agree():
  """Each full-profile entry is told one of four things, and the figure's panel of a method is
  the same: a method told nothing is never drawn among the color-aware ones."""
  bench = zoo_config.get_config("full")
  told = {n: entries.told(bench, n) for n in plan.method_entries(bench)}
  assert set(told.values()) == {"nothing", "the bias is color", "environments", "group labels"}
  assert told["erm"] == told["gradient_penalty"] == told["lff"] == told["jtt"] == "nothing"
  assert told["consistency"] == told["grayscale"] == told["random_recolor"] == "the bias is color"
  assert told["dfr"] == told["groupdro"] == "group labels" and told["irm"] == "environments"
  panel = {"told nothing of the bias": "nothing", "told the bias is color": "the bias is color",
           "group labels": "group labels", "invariance across environments": "environments"}
  for family, members in zoo_plots.FAMILIES.items():
    for n in members:
      assert told[n] == panel[family], (n, family)


def test_published_ratio_names_the_papers_ratio_or_none():
  assert published.published_ratio(0.05) == 0.05
  assert published.published_ratio(1 - 0.995) == 0.005
  assert published.published_ratio(0.3) is None


def test_rules_are_not_compared_where_every_run_holds_one_grid_point():
  one = {"a": {"status": "done", "grid": [{"lam": 1.0}]}, "b": {"status": "todo"}}
  assert sections.one_point_each({"runs": one})
  two = {**one, "c": {"status": "done", "grid": [{"lam": 1.0}, {"lam": 2.0}]}}
  assert not sections.one_point_each({"runs": two})
  assert not sections.one_point_each({"runs": {"b": {"status": "todo"}}})
  # One grid point, but stopped early: each rule stops its seeds at its own epochs.
  stopped = {**one, "d": {"status": "done", "grid": [{"lam": 1.0}],
                          "selection": {"val": {"epochs": [20, 40]}, "oracle": {"epochs": None}}}}
  assert not sections.one_point_each({"runs": stopped})
  stopped["d"]["selection"]["val"]["epochs"] = None
  assert sections.one_point_each({"runs": stopped})


def test_the_header_says_the_seeds_share_one_color_draw():
  bench = small_bench()
  with bench.unlocked():
    bench.protocols.study.data.seed = 7
  lines = []
  sections.section_header(hand_made(bench, VALUES), bench, lines)
  assert "all on one color draw of the data (data seed: study 7)" in " ".join(lines)


def test_a_run_that_fits_neither_cue_is_marked_under_the_headline_table():
  """val below both 1 - ratio (color alone, 95% at 5%) and the grayscale oracle's val (shape
  alone) by more than the margin is marked; 91% is within 5 points of 0.95, 89% is not."""
  bench = small_bench()
  res = hand_made(bench, {"erm": [0.97, 0.99], "groupdro": [0.91, 0.91], "jtt": [0.88, 0.90],
                          "grayscale": [0.96, 0.96]})
  for run in res["runs"].values():
    run["ratio"] = 0.05
  cell = plan.Run("study", "cheater", 0.05, "").cell
  assert [n for n in VALUES if sections.underfits(res, bench, cell, n)] == ["jtt"]
  note = sections._underfit_note(res, bench, [cell], ["erm", "groupdro", "jtt"])
  assert note[0].startswith("‡ Fits data drawn like its training set (val) worse than either")
  assert note[2:] == [f"- {sections._label(bench, 'jtt')}: at 5%, val 89.0% against 95.0% (color "
                      "alone) and 96.0% (shape alone); test aligned 89.0%, conflicting 89.0%.",
                      ""]
  del res["runs"][f"{cell}/grayscale"]  # No shape-alone reference: nothing is marked.
  assert not sections.underfits(res, bench, cell, "jtt")


def test_runs_the_ratio_does_not_change_are_said_to_repeat_one_run():
  """Same values seed for seed in both cells: repeated; equal means from other seeds' values, a
  missing cell, or a single cell: not."""
  bench = small_bench()
  cells = [plan.Run("study", "cheater", r, "").cell for r in (0.05, 0.01)]
  res = {"runs": {f"{cells[0]}/grayscale": _run([0.90, 0.92]),
                  f"{cells[1]}/grayscale": _run([0.90, 0.92]),
                  f"{cells[0]}/erm": _run([0.90, 0.92]), f"{cells[1]}/erm": _run([0.92, 0.90]),
                  f"{cells[0]}/jtt": _run([0.5, 0.5])}}
  names = ["erm", "jtt", "grayscale"]
  assert sections.same_at_every_ratio(res, bench, cells, names) == ["grayscale"]
  assert sections.same_at_every_ratio(res, bench, cells[:1], names) == []
  note = sections._repeated_note(bench, ["grayscale"])
  assert note[0].startswith(f"{sections._label(bench, 'grayscale')}: the same group-balanced "
                            "accuracy, seed for seed, at every ratio.")
  assert sections._repeated_note(bench, []) == []


def test_the_code_that_trained_the_runs_is_counted_per_commit():
  res = {"runs": {"a": {"cost": {"code": ["abc"]}}, "b": {"cost": {"code": ["abc", "def"]}},
                  "c": {"cost": {"code": ["abc"]}}, "d": {}}}
  assert sections.trained_on(res) == "Runs trained on code abc (3 runs), def (1 run)."
  assert sections.trained_on({"runs": {"d": {}}}).startswith("The code that trained the runs")


def test_the_stopped_early_table_gives_each_seeds_epoch_or_says_why_it_is_the_last():
  """Group DRO stopped at its seeds' epochs; JTT trained before its epochs were kept ('last',
  explained under the table); ERM and the oracle are not listed (read at their last epoch)."""
  bench = small_bench()
  res = hand_made(bench, VALUES)
  cell = plan.Run("study", "cheater", 0.05, "").cell
  for entry in VALUES:
    res["runs"][f"{cell}/{entry}"].update(epochs=2, evaluated_epochs=[1, 2])
  for sel in res["runs"][f"{cell}/groupdro"]["selection"].values():
    sel["epochs"] = [1, 2]
  lines = []
  sections.section_stopped(res, bench, lines)
  text = "\n".join(lines)
  assert "Group DRO, JTT (`config.stop_early`) are read seed by seed" in text
  assert "Protocol `study`, model `cheater` (epochs 1, 2 of 2 kept):" in text
  assert "| Group DRO | `group_val` | 1, 2 |" in text and "| JTT | `group_val` | last |" in text
  assert "*last*: read at its last epoch" in text and "| ERM |" not in text
  with bench.unlocked():
    bench.stop_early = ""  # Nothing stopped early: no section, and the header says nothing.
  lines = []
  sections.section_stopped(res, bench, lines)
  assert lines == [] and sections._stopped_sentence(bench) == ""
