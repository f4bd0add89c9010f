"""The study's report in pieces: markdown helpers, the per-seed record, findings and sections on
hand-made records, and that only the collect modules read what the stages wrote."""

import ast
import pathlib
import subprocess

import pytest

from ccmnist.report import attack_suite
from ccmnist.report import collect
from ccmnist.report import findings
from ccmnist.report import markdown
from ccmnist.report import paper
from ccmnist.report import sections
from ccmnist.report import verdicts
from ccmnist.util import stats
from configs import study as study_config

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {"jax": "J", "flax": "F", "optax": "O", "python": "P", "platform": "L", "device": "cpu X",
       "device_count": 2}


def test_fmt_and_vs_write_percent_with_the_seed_spread():
  assert markdown.fmt(0.8523) == "85.2"
  assert markdown.fmt({"mean": 0.5, "std": 0.0123, "n": 3}) == "50.0 ± 1.2"
  assert markdown.fmt({"mean": 0.5, "std": 0.0123, "n": 1}) == "50.0"  # One seed: no spread.
  assert markdown.fmt(None) == "n/a" and markdown.fmt({"mean": None, "std": None}) == "n/a"
  assert markdown.fmt(2.5, pct=False, digits=2) == "2.50"
  assert markdown.vs(0.5, 0.6) == "50.0 (study: 60.0)"
  assert markdown.vs(0.5, None) == "50.0"
  assert markdown.mean_percent([0.2, 0.3]) == "25.0%" and markdown.mean_percent(None) == "n/a"
  assert markdown.percent(0.05) == "5%" and markdown.percent(0.005) == "0.5%"


def test_table_figure_and_the_made_lines():
  assert markdown.table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |", ""]
  assert markdown.table(["a"], []) == ["| a |", "|---|", ""]
  assert markdown.heading("T", "intro") == ["## T", "", "intro", ""]
  times = {"train": {"seconds": 1.25}, "report": {"seconds": 0.5}}
  assert markdown.stage_table(times)[-2:] == ["| total | 1.8 |", ""]
  assert markdown.stage_table(times)[2] == "| train | 1.2 |"
  lines = markdown.environment_lines(ENV, "2020-01-01 00:00:00")
  assert lines == ["- jax J, flax F, optax O, Python P, cpu X x2, L.",
                   "- generated 2020-01-01 00:00:00.", ""]
  assert markdown.environment_lines({**ENV, "code": "abc1234"}, "g")[0] == (
      "- code: commit abc1234.")
  env = markdown.environment()
  assert set(env) == set(ENV) | {"code"} and env["device_count"] >= 1
  assert env["code"] == "unknown" or len(env["code"].split()[0]) >= 7
  dev = lambda platform, kind: type("Device", (), {"platform": platform, "device_kind": kind})
  assert markdown.device_name(dev("cpu", "cpu")) == "cpu"
  assert markdown.device_name(dev("gpu", "NVIDIA H100")) == "gpu NVIDIA H100"


def test_a_figure_is_linked_only_when_its_file_exists(tmp_path):
  assert markdown.figure(tmp_path, "figures/a.png", "A") == []
  (tmp_path / "figures").mkdir()
  (tmp_path / "figures" / "a.png").write_bytes(b"png")
  assert markdown.figure(tmp_path, "figures/a.png", "A") == ["![A](figures/a.png)", "*A*", ""]


def test_over_seeds_keeps_each_seed_in_place_and_skips_missing_ones():
  got = stats.over_seeds([0.5, None, 0.7])
  assert got["values"] == [0.5, None, 0.7] and got["n"] == 2
  assert got["mean"] == pytest.approx(0.6) and got["std"] == pytest.approx(0.02 ** 0.5)
  assert stats.over_seeds([None]) == {"mean": None, "std": None, "n": 0, "values": [None]}


def _point(lam, **acc):
  return {"lam": lam, "accuracy": {k: {"mean": v, "std": 0.0, "n": 1} for k, v in acc.items()}}


def test_model_selection_picks_each_criterions_best_grid_point():
  run = {"downstream_lam": 0.5, "grid": [
      _point(0.0, test_hard=0.2, val=0.9, val_unbiased=0.3),
      _point(0.5, test_hard=0.8, val=0.7, val_unbiased=0.6),
      _point(1.0, test_hard=0.6, val=0.8)]}
  sel = collect.model_selection(run)
  assert {k: s["lam"] for k, s in sel.items()} == {"test_hard": 0.5, "val": 0.0,
                                                    "val_unbiased": 0.5}
  assert sel["val"]["test_hard"]["mean"] == 0.2  # What choosing on val would report.
  assert collect.point_at(run)["lam"] == 0.5 and collect.point_at(run, 1.0)["lam"] == 1.0


def test_budget_and_verdict_differences_with_another_study():
  config = {"data": {"train_size": 400}, "num_seeds": 2,
            "runs": {"a": {"train": {"epochs": 3}}, "b": {"train": {"epochs": 4}}}}
  assert findings.budget(config) == "400 digits, 3-4 epochs, 2 seeds"
  here = {"findings": [{"claim": "x", "holds": True, "measured": "m1"},
                       {"claim": "y", "holds": None, "measured": "m2", "strength": "p 0.2"},
                       {"claim": "z", "holds": False, "measured": "m3"},
                       {"claim": "u", "holds": None, "measured": "m4",
                        "strength": "untestable: lr 0.001 underfits"}]}
  there = {"findings": [{"claim": "x", "holds": True, "measured": "n1"},
                        {"claim": "y", "holds": False, "measured": "n2"},
                        {"claim": "u", "holds": None, "measured": "n4", "strength": "p 0.3"}]}
  diffs = findings.profile_differences(here, there)
  # Untestable and not resolved both store holds = None, yet they are different verdicts.
  assert diffs == [{"claim": "y", "here": "not resolved", "there": "does not hold",
                    "measured_here": "m2", "measured_there": "n2"},
                   {"claim": "u", "here": "untestable", "there": "not resolved",
                    "measured_here": "m4", "measured_there": "n4"}]


def test_render_writes_every_finding_and_the_made_section_from_the_record_alone(tmp_path):
  study = study_config.get_config("tiny")
  rows, tests = zip(
      findings.finding("claim A", "rule A", ["r"], "measured A", [[0.95]],
                       lambda: verdicts.threshold([0.95], at_least=0.9), seeds=[[0]]),
      findings.finding("claim B", "rule B", ["r"], "n/a", [None], lambda: 1 / 0),
      findings.finding("claim C", "rule C", ["r", "s"], "measured C", [[0.1, 0.2, 0.3]] * 2,
                       lambda: verdicts.paired_test([0.1, 0.2, 0.3], [0.3, 0.3, 0.5])))
  found, missing, paired = verdicts.judge(list(rows), list(tests))
  assert missing["holds"] is None and missing["strength"] == "not measured"
  assert found["run_seeds"] == [[0]] and found["p"] is None  # One seed: no test.
  assert paired["family"] == 1 and paired["p_holm"] == pytest.approx(paired["p"])  # p 0.038.
  assert paired["holds"] is True and paired["df"] == 2 and paired["test"] == "paired t"
  unresolved = verdicts.judge([rows[2], rows[2]], [tests[2], (
      verdicts.paired_test([0.1, 0.2, 0.3], [0.3, 0.3, 0.5]), -1, None)])[0]
  assert unresolved["holds"] is None and unresolved["p_holm"] == pytest.approx(2 * paired["p"])
  res = {"runs": {}, "model_selection": {}, "findings": [found, missing, unresolved],
         "stages": {"report": {"seconds": 0.5}}, "environment": ENV,
         "generated": "2020-01-01 00:00:00"}
  md = sections.render(res, study, tmp_path)  # An empty workdir: nothing is read from it.
  assert "| claim A | rule A | r | measured A | holds (1 seed: indicative) |" in md
  assert "| claim B | rule B | r | n/a | not measured |" in md
  assert ("| measured C | paired t(2) = 5.00, p = 0.038, Holm-adjusted p = 0.075 over 2 "
          "comparisons, 3 seeds (exact sign-flip p = 0.25): not resolved with 3 seeds |") in md
  assert "Holm" in md and "2 standard errors" not in md
  assert "## 1. The cheater" not in md  # No run, no section.
  assert "- jax J, flax F, optax O, Python P, cpu X x2, L." in md
  assert "| report | 0.5 |" in md and "| total | 0.5 |" in md


def _seed_point(lam, train, hard):
  """A collected grid point with per-seed train and hard accuracies."""
  return {"lam": lam, "seeds": [0, 1], "accuracy": {"train": stats.over_seeds(train),
                                                    "test_hard": stats.over_seeds(hard)}}


def test_grids_show_a_shared_lambda_zero_control_once_and_keep_a_different_one():
  res = {"runs": {
      "a": {"grid": [_seed_point(0.0, [0.9, 0.8], [0.1, 0.2]),
                     _seed_point(1.0, [0.7, 0.7], [0.5, 0.6])]},
      "b": {"grid": [_seed_point(0.0, [0.9, 0.8], [0.1, 0.2]),
                     _seed_point(2.0, [0.6, 0.6], [0.7, 0.7])]},
      "c": {"grid": [_seed_point(0.0, [0.5, 0.5], [0.1, 0.2])]}}}
  lines = []
  sections.section_grids(res, lines, "2. Grids", [("a", {}), ("b", {}), ("c", {})])
  rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| run")]
  assert [r.split(" | ")[0] for r in rows] == ["| a@0 = b@0", "| a", "| b", "| c@0"]
  assert "85.0 ± 7.1" in rows[0]  # Train of the shared control, mean ± std over its 2 seeds.


def test_summary_is_five_lines_at_most_and_quotes_keyed_findings_in_order():
  found = [{"claim": f"claim {k}", "key": k, "holds": True, "strength": "p = 0.01",
            "measured": f"m {k}", "family": 6} for k in reversed(paper.SUMMARY_KEYS)]
  found.append({"claim": "x", "key": None, "holds": None, "strength": "untestable: underfits",
                "measured": "n/a"})
  lines = []
  config = {"num_seeds": 3, "seed": 0, "data": {"train_size": 100},
            "runs": {"a": {"train": {"epochs": 2}}, "b": {"train": {"epochs": 5}}}}
  paper.section_summary({"findings": found, "config": config}, lines)
  body = [ln for ln in lines if ln.startswith("- ")]
  assert len(body) == 5 and "(100 digits, 2-5 epochs, 3 seeds)" in body[0]
  assert f"{len(paper.SUMMARY_KEYS)} hold, 1 untestable" in body[0]
  assert [b.split(":")[0] for b in body[1:]] == [f"- claim {k}" for k in paper.SUMMARY_KEYS[:4]]


def test_run_titles_and_setup_say_the_optimizer_each_run_was_configured_with():
  config = study_config.get_config("quick").to_dict()
  lr = config["runs"]["cheater"]["optim"]["lr"]
  assert paper.run_title(config, "cheater") == f"cheater (erm, SGD lr {lr:g})"
  assert "Adam lr 0.001" in paper.run_title(config, "counterfactual")
  lines = []
  paper.section_setup({"config": config}, lines)
  row = next(ln for ln in lines if ln.startswith("| cheater |"))
  assert f"SGD lr {lr:g}" in row and f"| {config['runs']['cheater']['train']['epochs']} |" in row


# Calls that read what the stages wrote; only the collect modules make them.
READERS = {"read_json", "read_text", "read_bytes", "read_curves", "load_config",
           "load_predictions", "read_stage_times", "read_selection", "open", "load"}


def readers_called(path: pathlib.Path) -> set:
  """The names of READERS that a module calls."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Call):
      f = node.func
      name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
      if name in READERS:
        out.add(name)
  return out


@pytest.mark.parametrize("module", [
    "report/findings.py", "report/sections.py", "report/markdown.py", "report/report.py",
    "zoo/findings.py", "zoo/sections.py", "zoo/entries.py", "zoo/report.py"])
def test_only_the_collect_modules_read_the_workdir(module):
  assert readers_called(REPO / "ccmnist" / module) == set()


def test_the_collect_modules_are_where_the_workdir_is_read():
  assert {"read_json", "read_curves"} <= readers_called(REPO / "ccmnist/report/collect.py")
  assert "read_json" in readers_called(REPO / "ccmnist/zoo/collect.py")


def test_a_report_without_an_attack_stage_has_no_failed_checks():
  assert attack_suite.failed_checks(None, "cheater") == []


def test_seed_summaries_spread_every_analysed_seed():
  entry = lambda argmax, median, conf: {
      "sweep": {"epsilons": [5.0, 12.75], "success_prob": [0.0, 0.5],
                "success_argmax": [0.1, argmax]},
      "min_eps": {"median": median}, "anatomy": {},
      "clean_confidence": {"mean_max_softmax": conf, "share_above_threshold": 0.5}}
  seeds = [entry(0.2, 8.0, 0.9), entry(0.4, None, 0.7)]  # The second: no success (null).
  attack = {"study_eps": 12.75, "models": {"a": {**seeds[0], "seeds": seeds}},
            "suite": {"models": {"a": {"worst_robust_accuracy": 0.3,
                                       "targeted": {"worst": 0.6}}}}}
  interp = {"models": {"a": {"spread": {"test_hard": {"pred": {"entropy_nats_mean": 4.0}}},
                             "seeds": [{"spread": {"test_hard": {"pred": {
                                 "entropy_nats_mean": h}}}} for h in (4.0, 5.0)]}}}
  got = collect.seed_summaries(attack, interp)
  a = got["attack"]["a"]
  assert a["success_argmax@12.75"] == stats.over_seeds([0.2, 0.4])
  assert a["min_eps_median"]["values"] == [8.0, None] and a["min_eps_median"]["n"] == 1
  assert a["clean_mean_max_softmax"]["mean"] == pytest.approx(0.8)
  assert a["color_shift_share"]["n"] == 0  # Not measured: no value, no mean.
  # An entry without 'seeds' (one seed analysed) is its own one seed.
  assert a["suite_worst_robust_accuracy"]["values"] == [0.3]
  assert got["interpret"]["a"]["spread_test_hard"]["mean"] == pytest.approx(4.5)
  assert got["interpret"]["a"]["spread_test_easy"]["n"] == 0
  assert collect.seed_summaries(None, None) == {"attack": {}, "interpret": {}}


def _representation(classes_by_layer, *, counted=True):
  """A hand-made interpret.json 'representation' record: per layer its channel classes."""
  null = {"mean": 0.5, "p95": 0.6}
  layers = {}
  for layer, classes in classes_by_layer.items():
    r = {"probe": {"color": 0.9, "digit": 0.2},
         "probe_null": {"random": {"color": null, "digit": null}},
         "invariance": {"ratio": 5.0, "classes": classes},
         "invariance_null": {"random": {"ratio": null}}}
    if counted:
      r["selectivity"] = {k: classes.count(k) for k in ("color", "shape")}
      r["selectivity"].update(neither=len(classes) - r["selectivity"]["color"]
                              - r["selectivity"]["shape"], channels=len(classes))
    layers[layer] = r
  return {"input_swap": {"changed": 0.5}, "input_swap_null": {"random": {"changed": null}},
          "layers": layers}


def test_the_representation_section_counts_calls_and_judges_the_positive_control():
  cheater = _representation({"conv0": ["color", "color", "mixed"], "conv1": ["color", "dead"]})
  passed = _representation({"conv0": ["shape", "mixed", "mixed"], "conv1": ["shape", "shape"]},
                           counted=False)  # Counts from the classes of an older record.
  failed = _representation({"conv0": ["shape", "mixed", "mixed"], "conv1": ["mixed", "color"]})
  for grey, verdict in ((passed, "Positive control passed"),
                        (failed, "Positive control failed at conv1:")):
    lines = []
    sections.section_representation(
        {"interpret": {"models": {"cheater": {"representation": cheater},
                                  "grayscale": {"representation": grey}}}}, lines, "/nonexistent")
    text = "\n".join(lines)
    assert "| cheater | 2 / 0 / 1 | 1 / 0 / 1 |" in text
    assert "| grayscale (positive control for shape) | 0 / 1 / 2 |" in text
    assert verdict in text and text.count("Positive control") == 1
  lines = []
  sections.section_representation(
      {"interpret": {"models": {"cheater": {"representation": cheater}}}}, lines, "/nonexistent")
  assert "No positive control" in "\n".join(lines)


def test_the_code_version_is_the_commit_a_process_started_on(tmp_path):
  git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,
                                  capture_output=True, text=True)
  git("init", "-q")
  (tmp_path / "ccmnist").mkdir()
  (tmp_path / "ccmnist" / "a.py").write_text("x = 1\n")
  git("add", "-A")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
  first = git("rev-parse", "--short", "HEAD").stdout.strip()
  assert markdown.checkout_version(tmp_path) == first
  (tmp_path / "ccmnist" / "a.py").write_text("x = 2\n")  # A commit made while it runs...
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
  assert markdown.checkout_version(tmp_path) == first  # ...is not the code it loaded.
  assert markdown.checkout_version(tmp_path / "not_a_checkout") == "unknown"
