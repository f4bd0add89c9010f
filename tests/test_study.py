"""The whole study end to end on the tiny config (synthetic digits): every stage and section."""

import json
import re
import shutil

import numpy as np
import pytest

from ccmnist import layout
from ccmnist import pipeline
from ccmnist import study
from ccmnist.report import findings as findings_lib
from ccmnist.report import paper
from ccmnist.report import report as report_lib
from ccmnist.report import verdicts
from scipy import stats

from configs import study as study_config


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("study")
  cfg = study_config.get_config("tiny")
  times = study.run_study(cfg, workdir)
  return cfg, workdir, times


def test_every_stage_ran_and_report_has_every_section(tiny_study):
  cfg, workdir, times = tiny_study
  assert set(times) == set(study.stage_table(cfg))
  report = (workdir / "report.md").read_text()
  for heading in ("# Reproducing \"Biased Model Analysis", "## Summary", "## Setup",
                  "## Findings", "## 1. The cheater", "## 1b. Step size",
                  "## 2a. Input-gradient penalty", "## 2b. Counterfactual consistency",
                  "## 3. Grad-CAM",
                  "## 4. Targeted PGD",
                  "## 5. Transfer", "## 6. Every model side by side", "## 7. Choosing λ",
                  "## 8. Where the models represent", "## 9. Minimal epsilon",
                  "## Limitations", "## Appendix: figures", "## How this was made"):
    assert heading in report, heading
  assert "(study: 24.3)" in report and "(study: 85.2)" in report
  results = json.loads((workdir / "results.json").read_text())
  assert list(results["runs"]) == list(layout.train_runs(cfg))
  assert [p["lam"] for p in results["runs"]["counterfactual"]["grid"]] == [
      0.0, 0.1, 0.25, 0.5, 1.0, 2.0]  # Every grid starts at its lambda = 0 control.
  assert set(results["model_selection"]["counterfactual"]) == {"test_hard", "val",
                                                                 "val_unbiased"}
  for point in results["runs"]["cheater"]["grid"]:
    assert 0.0 <= point["accuracy"]["test_hard"]["mean"] <= 1.0
  assert results["interpret"]["models"] and results["attack"]["models"]
  # The study's claims, the penalty at the study's settings, then the attack suite's two
  # (worst case, targeted and untargeted).
  # A best lambda other than the study's adds its own row.
  n = len(CLAIMS) + (findings_lib.best_penalty_lam(results["runs"]["gradient_penalty"]) != 0.1)
  assert [f["claim"][:40] for f in results["findings"][n:]] == [
      "The input-gradient penalty helps on the ", "The debiased model is harder to attack (",
      "The debiased model is harder to attack ("]
  assert results["findings"][n]["runs"][0] == "gradient_penalty_study@0"
  assert len(results["findings"]) == n + 3
  for point in results["runs"]["gradient_penalty"]["grid"]:  # The penalty's weight recorded.
    assert point["penalty_ratio"]["mean"] >= 0 and (point["lam"] > 0) == (
        point["penalty_ratio"]["mean"] > 0)
  assert "| λ | train | test_hard | λ·penalty / CE |" in report
  for f in results["findings"]:
    assert f["runs"] and f["seeds"] == 1 and f["strength"] != "not measured", f
  assert results["findings"][1]["holds"] == (  # lambda 0.5, the study's.
      results["runs"]["counterfactual"]["grid"][3]["accuracy"]["test_hard"]["mean"] >= 0.7)
  assert {"counterfactual@0", "gradient_penalty@0"} <= set(results["attack"]["models"])
  for name, m in results["interpret"]["models"].items():  # Every measure beside its null.
    rep = m["representation"]
    assert rep["input_swap_null"]["random"]["changed"]["p95"] is not None, name
    for layer, r in rep["layers"].items():
      for key in ("probe", "invariance", "causal"):
        assert set(r[f"{key}_null"]) == {"random", "hue_blind"}, (name, layer, key)
  for name, m in results["attack"]["models"].items():
    an = m["anatomy"]
    for key in ("color_shift_share", "stroke_energy_share", "chromatic_share"):
      assert an[f"{key}_null"] is not None and 0 <= an[key] <= 1, (name, key)
  for link in ("figures/training_curves.png", "figures/samples_train.png",
               "attack/figures/example_perturbation.png"):
    assert link in report and (workdir / link).exists()


def test_every_link_of_the_report_resolves(tiny_study):
  _, workdir, _ = tiny_study
  report = (workdir / "report.md").read_text()
  links = re.findall(r"\]\(([^)]+)\)", report)
  assert len(links) > 10
  missing = [link for link in links if not (workdir / link).exists()]
  assert not missing, missing


def test_rerun_skips_finished_stages_and_refuses_other_config(tiny_study):
  cfg, workdir, _ = tiny_study
  before = json.loads((workdir / "results.json").read_text())
  study.run_study(cfg, workdir)  # Everything is done: only the report is rewritten.
  after = json.loads((workdir / "results.json").read_text())
  assert after["runs"] == before["runs"]
  cfg.only = "report"  # One stage on the same workdir: `only` selects, it is not the config.
  (workdir / "report.md").unlink()
  study.run_study(cfg, workdir)
  assert (workdir / "report.md").exists()
  cfg.only = ""
  other = study_config.get_config("tiny")
  with other.unlocked():
    other.num_seeds = 2
  with pytest.raises(ValueError, match="different config"):
    study.run_study(other, workdir)


def test_bad_stage_and_run_names_raise():
  cfg = study_config.get_config("tiny")
  with cfg.unlocked():
    cfg.only = "cheater,nonsense"
  with pytest.raises(ValueError, match="unknown stages"):
    study.selected_stages(cfg)
  cfg.only = "report,attack,cheater"  # Run in the table's order, whatever order they are named.
  assert study.selected_stages(cfg) == ("cheater", "attack", "report")
  # Every stage needs only earlier stages that have a `done` check.
  pipeline.check_table(cfg, study.stage_table(cfg))
  assert study.stage_table(cfg)["attack"].needed(cfg) == tuple(
      dict.fromkeys(m.split("@")[0] for m in cfg.attack.models.split(",")))
  with pytest.raises(ValueError, match="Unknown run"):
    layout.downstream_runs(cfg, ".", "cheater,resnet")
  with pytest.raises(ValueError, match="name@LAMBDA"):
    layout.downstream_runs(cfg, ".", "counterfactual@zero")
  with pytest.raises(ValueError, match="lambda grid"):
    layout.downstream_runs(cfg, ".", "counterfactual@0.3")
  bad = study_config.get_config("tiny")
  bad.attack.settings.pgd.norm = "l3"
  with pytest.raises(ValueError, match="config.pgd"):  # Before any stage runs.
    study.check_study_config(bad)
  with pytest.raises(ValueError, match="Unknown config variant"):
    study_config.get_config("huge")


def _attacked(argmax, prob, median, confidence=None) -> dict:
  """attack.json's entry of one model: one number each for one seed, or a list per seed
  (then the first seed's entry with every seed's in 'seeds', as the attack stage writes it)."""
  per_seed = lambda v: v if isinstance(v, list) else [v]
  seeds = [{"seed": s, "sweep": {"epsilons": [5.0, 12.75], "success_argmax": [0.0, a],
                                 "success_prob": [0.0, pr]}, "min_eps": {"median": me},
            **({"clean_confidence": {"mean_max_softmax": c[0], "share_above_threshold": c[1]}}
               if c else {})}
           for s, (a, pr, me, c) in enumerate(zip(per_seed(argmax), per_seed(prob),
                                                  per_seed(median),
                                                  confidence or [None] * len(per_seed(argmax))))]
  return {**seeds[0], "seeds": seeds}


def _res(hard: dict, easy, attack: dict, lams: dict | None = None) -> dict:
  """A hand-made collect() result. hard: {run: {lam: [per-seed test_hard]}} (or a list: one
  grid point at the run's study lambda); attack: {model: (argmax, prob, median min eps[,
  [(mean max-softmax, share above 0.9) per seed]])}, each a number or a list per seed."""
  lams = lams or {"counterfactual": 0.5, "gradient_penalty": 0.1}
  runs = {}
  for name, by_lam in hard.items():
    lam = lams.get(name, 0.0)
    by_lam = by_lam if isinstance(by_lam, dict) else {lam: by_lam}
    runs[name] = {"downstream_lam": lam, "grid": [
        {"lam": g, "seeds": list(range(len(v))),
         "accuracy": {"test_hard": {"values": v}, "test_easy": {"values": easy}}}
        for g, v in by_lam.items()]}
  models = {m: _attacked(*v) for m, v in attack.items()}
  return {"runs": runs, "attack": {"models": models}}


STEP = ("step size", "training length", "loss still falls", "adaptivity")
CLAIMS = ("shortcut", "cf recovers", "cf vs its lambda 0", "erm adam", "erm momentum", *STEP,
          "attack argmax", "attack min eps", "study pair", "gp at the study's lambda")


def holds(res) -> dict:
  return dict(zip(CLAIMS, (f["holds"] for f in report_lib.findings(res))))


def test_findings_compare_each_method_with_its_own_control():
  res = _res({"cheater": [0.06], "erm_adam": [0.05], "erm_momentum": [0.04],
              "counterfactual": {0.0: [0.2], 0.5: [0.8]},
              "gradient_penalty": {0.0: [0.05], 0.1: [0.4]}}, [0.95],
             {"counterfactual@0": (0.9, 0.5, 8.0), "counterfactual": (0.3, 0.1, 20.0),
              "cheater": (0.6, 0.05, 25.0)})
  assert holds(res) == {c: None if c in STEP else True for c in CLAIMS}  # No lr grid here.
  f = {c: x for c, x in zip(CLAIMS, report_lib.findings(res)) if c not in STEP}
  assert f["cf vs its lambda 0"]["runs"] == ["counterfactual@0", "counterfactual@0.5"]
  assert f["gp at the study's lambda"]["runs"] == ["gradient_penalty@0", "gradient_penalty@0.1"]
  gp_rows = [x for x in report_lib.findings(res) if x["runs"][0] == "gradient_penalty@0"]
  assert len(gp_rows) == 1  # No best lambda other than the study's: one penalty row.
  assert all(x["seeds"] == 1 and x["strength"] == verdicts.INDICATIVE for x in f.values())
  # The study's own pair (cheater vs consistency), its own row: argmax 60% -> 30%, and the
  # study's p > 0.9 criterion beside.
  assert f["study pair"]["runs"] == ["cheater", "counterfactual@0.5"]
  assert f["study pair"]["holds"] is True
  assert "p > 0.9: cheater 5.0% vs" not in f["study pair"]["measured"]
  assert "p > 0.9: cheater 5.0%, counterfactual@0.5 10.0% (study: 98% vs 67%)" in f[
      "study pair"]["measured"]
  assert "more than the method: the optimizer" in f["study pair"]["rule"]


def test_the_disagreement_on_the_attack_claim_gives_the_means_over_seeds():
  res = _res({"cheater": [0.06, 0.07]}, [0.95, 0.95],
             {"cheater": ([0.4, 0.6], [0.0, 0.1], [25.0, 20.0], [(0.6, 0.1), (0.8, 0.3)]),
              "counterfactual": ([0.9, 1.0], [0.8, 0.9], [8.0, 7.0], [(0.9, 0.7), (0.9, 0.8)])})
  lines = []
  paper.section_disagreements(res, lines)
  text = "\n".join(lines)
  assert ("Ours (mean of 2 seeds): 5.0% vs 85.0% on that criterion and 50.0% vs 95.0% when "
          "success is the target becoming the argmax") in text
  assert "mean max-softmax is 70.0% (cheater) and 90.0% (counterfactual)" in text
  assert "predicted with p > 0.9 20.0% and 75.0%" in text


def test_findings_turn_when_the_controls_do_as_well():
  res = _res({"cheater": [0.06], "erm_adam": [0.86], "erm_momentum": [0.83],
              "counterfactual": {0.0: [0.85], 0.5: [0.8]},
              "gradient_penalty": {0.0: [0.05], 0.1: [0.03]}}, [0.95],
             {"counterfactual@0": (0.4, 0.97, 15.0), "counterfactual": (0.5, 0.89, 12.0)})
  assert holds(res) == {c: None if c in STEP or c == "study pair"  # The cheater: not attacked.
                        else c in ("shortcut", "cf recovers") for c in CLAIMS}


def test_findings_with_seeds_need_more_than_their_spread():
  noisy = _res({"cheater": [0.06, 0.07, 0.05], "erm_adam": [0.05, 0.30, 0.02],
                "erm_momentum": [0.05, 0.06, 0.07],
                "counterfactual": {0.0: [0.2, 0.22, 0.18], 0.5: [0.8, 0.83, 0.77]}},
               [0.95, 0.94, 0.96], {})
  # The cheater's run at lr 1e-3 as an lr grid of one point, and a long run.
  noisy["runs"]["erm_sgd_lr"] = {"downstream_lam": 0.0, "grid": [
      {"lam": 0.0, "lr": 1e-3, "seeds": [0, 1, 2],
       "accuracy": {"test_hard": {"mean": 0.06, "values": [0.06, 0.07, 0.05]}}}]}
  noisy["runs"]["cheater_long"] = noisy["runs"]["erm_adam"]
  got = holds(noisy)
  assert got["cf vs its lambda 0"] is True  # +0.60, +0.61, +0.59: t(2) = 104.
  # Differences -0.01, +0.23, -0.03: mean 0.0633, sd 0.1457, t(2) = 0.75, p 0.53.
  assert got["training length"] is None and got["adaptivity"] is None
  f = report_lib.findings(noisy)[CLAIMS.index("training length")]
  assert f["seeds"] == 3 and f["strength"].endswith("not resolved with 3 seeds")
  assert f["df"] == 2 and f["p"] == pytest.approx(0.53, abs=0.01)
  assert f["run_seeds"] == [[0, 1, 2], [0, 1, 2]]
  # One family: the 8 claims with a test (those not measured and the attack suite's apart).
  assert f["family"] == 8 and f["p_holm"] >= f["p"]
  assert got["gp at the study's lambda"] is None and got["attack argmax"] is None  # Unmeasured.
  assert report_lib.findings(noisy)[CLAIMS.index("gp at the study's lambda")]["strength"] == (
      "not measured")


def test_an_attack_that_never_succeeds_counts_as_the_largest_budget():
  d = verdicts.paired_test([8.0, float("inf")], [float("inf"), float("inf")])
  assert d["values"] == [float("inf"), 0.0]
  assert d["p"] is None and verdicts.decide(d, direction=1)[0] is None
  assert verdicts.decide(verdicts.paired_test([8.0], [float("inf")]), direction=1)[0]


def test_each_model_is_attacked_on_data_colored_as_it_was_trained(tiny_study):
  cfg, workdir, _ = tiny_study
  from ccmnist.attacks import run as attack_run  # pylint: disable=import-outside-toplevel
  from ccmnist.train import runs  # pylint: disable=import-outside-toplevel
  loaded = {n: runs.load_run(layout.run_dir(workdir, n)) for n in ("cheater", "gradient_penalty")}
  assert loaded["gradient_penalty"][2].data.noise_sigma == 0.0  # The study's noise-free run.
  ref, data_run, own = attack_run._attack_data(cfg.attack.settings, loaded)
  assert data_run == "cheater" and ref is own["cheater"]
  np.testing.assert_array_equal(own["gradient_penalty"]["labels"], ref["labels"])
  np.testing.assert_array_equal(own["gradient_penalty"]["colors"], ref["colors"])
  assert not np.array_equal(own["gradient_penalty"]["images"], ref["images"])  # No noise.


def test_the_report_lists_verdicts_that_differ_from_another_profile(tiny_study, tmp_path):
  cfg, workdir, _ = tiny_study
  other = json.loads((workdir / "results.json").read_text())
  other["findings"][0] = {**other["findings"][0], "holds": not other["findings"][0]["holds"],
                          "measured": "elsewhere"}
  other["config"]["data"]["train_size"] = 54_000
  (tmp_path / "other.json").write_text(json.dumps(other))
  with cfg.unlocked():
    cfg.compare_with = str(tmp_path / "other.json")
    cfg.only = "report"
  try:
    study.run_study(cfg, workdir)  # compare_with changes the report, not the computation.
    res = json.loads((workdir / "results.json").read_text())
    assert [d["claim"] for d in res["compared_with"]["differences"]] == [
        other["findings"][0]["claim"]]
    report = (workdir / "report.md").read_text()
    assert "## Against the other profile" in report and "54000 digits" in report
    assert f"1 of {len(res['findings'])} differ" in report
    with cfg.unlocked():
      cfg.compare_with = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="compare_with"):
      study.run_study(cfg, workdir)
  finally:
    with cfg.unlocked():
      cfg.compare_with, cfg.only = "", ""
    study.run_study(cfg, workdir)  # The report as the other tests expect it.


def test_one_seed_differences_within_the_test_sets_noise_are_no_finding():
  res = _res({"gradient_penalty": {0.0: [0.0350], 0.1: [0.0353]},
              "counterfactual": {0.0: [0.25], 0.5: [0.80]}}, [0.95], {})
  assert holds(res)["gp at the study's lambda"] is True  # No test-set size: by sign alone.
  res["config"] = {"data": {"test_size": 10_000}}
  got = {c: f for c, f in zip(CLAIMS, report_lib.findings(res))}
  assert got["gp at the study's lambda"]["holds"] is None
  assert "sampling noise" in got["gp at the study's lambda"]["strength"]
  assert got["cf vs its lambda 0"]["holds"] is True  # 55 points: far beyond the noise.
  # The noise floor itself: two rates of 0.5 on 100 items differ by sqrt(0.5/100) = 0.0707 SE.
  assert verdicts.sampling_se(0.5, 0.5, 100) == pytest.approx(np.sqrt(0.5 / 100))


def test_downstream_models_carry_every_seeds_replica():
  cfg = study_config.get_config("tiny")
  cfg.num_seeds = 3
  runs = layout.downstream_runs(cfg, "W", "cheater,counterfactual,counterfactual@0")
  # Replica r = grid point g * num_seeds + seed s; the study's counterfactual λ 0.5 is g = 3.
  assert runs == {"cheater": (layout.run_dir("W", "cheater"), [0, 1, 2]),
                  "counterfactual": (layout.run_dir("W", "counterfactual"), [9, 10, 11]),
                  "counterfactual@0": (layout.run_dir("W", "counterfactual"), [0, 1, 2])}
  assert layout.selected_replica(cfg, "counterfactual") == 9  # The figures' seed: the first.


def test_attack_verdicts_run_over_every_attacked_seed():
  cf0, cf, cheat = [0.9, 0.8, 0.85], [0.3, 0.35, 0.2], [0.9, 0.96, 0.81]
  res = _res({"cheater": [0.06, 0.07, 0.05], "counterfactual": {0.0: [0.2, 0.2, 0.2],
                                                                0.5: [0.8, 0.8, 0.8]}},
             [0.95] * 3,
             {"counterfactual@0": (cf0, [0.5, 0.4, 0.45], [8.0, 9.0, 7.0]),
              "counterfactual": (cf, [0.1, 0.1, 0.1], [20.0, 19.0, 22.0],
                                 [(0.97, 0.9), (0.95, 0.8), (0.99, 0.95)]),
              "cheater": (cheat, [0.05, 0.02, 0.03], [25.0, 24.0, 26.0],
                          [(0.6, 0.1), (0.5, 0.0), (0.7, 0.2)])})
  assert findings_lib.attack_values(res, "counterfactual", 12.75) == {
      "argmax": cf, "prob": [0.1, 0.1, 0.1], "min_eps": [20.0, 19.0, 22.0],
      "confidence": [0.97, 0.95, 0.99], "confident_share": [0.9, 0.8, 0.95]}
  assert findings_lib.attack_values(res, "counterfactual@0", 12.75)["confidence"] is None
  assert findings_lib.attack_values(res, "counterfactual", 7.0) is None  # Not swept there.
  assert findings_lib.attack_values(res, "erm_adam", 12.75) is None  # Not attacked.
  assert findings_lib.model_seeds(res, "counterfactual") == [0, 1, 2]
  f = dict(zip(CLAIMS, report_lib.findings(res)))
  for claim in ("attack argmax", "attack min eps", "study pair"):
    assert f[claim]["seeds"] == 3 and f[claim]["df"] == 2, claim
    assert f[claim]["run_seeds"] == [[0, 1, 2], [0, 1, 2]], claim
  # Seed s of the control paired with seed s of the method: the paired t-test over seeds.
  assert f["attack argmax"]["p"] == pytest.approx(stats.ttest_rel(cf, cf0).pvalue)
  assert f["attack min eps"]["p"] == pytest.approx(
      stats.ttest_rel([20.0, 19.0, 22.0], [8.0, 9.0, 7.0]).pvalue)
  # The study's own pair, its own row and verdict: 89% -> 28% argmax success, 3 seeds.
  pair = f["study pair"]
  assert pair["runs"] == ["cheater", "counterfactual@0.5"]
  assert pair["p"] == pytest.approx(stats.ttest_rel(cf, cheat).pvalue) and pair["p"] < 0.05
  assert pair["holds"] is True
  # Clean confidence beside p > 0.9: the seed means of the mean max-softmax and of the share.
  assert "cheater 0.60, 10.0%; counterfactual@0.5 0.97, 88.3%" in pair["measured"]
  assert "counterfactual@0 n/a" in f["attack argmax"]["measured"]


def test_the_attack_stage_attacks_every_seed_on_the_same_digits(tiny_study, tmp_path):
  cfg, workdir, _ = tiny_study
  from ccmnist.attacks import run as attack_run  # pylint: disable=import-outside-toplevel
  settings = study_config.get_config("tiny").attack.settings
  settings.smoothing.enabled = False
  # The tiny study trains one seed: two grid points of a run stand in for two seeds.
  out = attack_run.attack_runs(
      {"cheater": (layout.run_dir(workdir, "cheater"), [0]),
       "counterfactual@0": (layout.run_dir(workdir, "counterfactual"), [0, 3])}, settings,
      tmp_path / "attack")
  study_run = json.loads((workdir / "attack" / "attack.json").read_text())
  m = out["models"]["counterfactual@0"]
  assert [e["replica"] for e in m["seeds"]] == [0, 3]
  assert len(out["models"]["cheater"]["seeds"]) == 1
  for key in ("sweep", "min_eps", "anatomy"):  # The first seed: as the study's stage had it.
    assert m["seeds"][0][key] == m[key] == study_run["models"]["counterfactual@0"][key], key
  assert m["seeds"][1]["sweep"]["mean_p_target"] != m["seeds"][0]["sweep"]["mean_p_target"]
  for e in m["seeds"]:
    assert 0 < e["clean_confidence"]["mean_max_softmax"] <= 1
  assert m["clean_confidence"]["mean_max_softmax"] == [  # The model's entry: every seed's.
      e["clean_confidence"]["mean_max_softmax"] for e in m["seeds"]]
  assert out["seeds"] == [cfg.seed]  # Two grid points of one seed.
  assert (tmp_path / "attack" / "stages" / "counterfactual@0.seed1.json").exists()
  # Transfer and the suite per seed; the second seed's models: those that have one.
  assert [t["names"] for t in out["transfer_seeds"]] == [["cheater", "counterfactual@0"],
                                                         ["counterfactual@0"]]
  assert [e["replica"] for e in out["suite"]["models"]["counterfactual@0"]["seeds"]] == [0, 3]
  assert len(out["suite"]["masking_checks_seeds"]) == 2
  assert len(findings_lib.attack_values({"attack": out}, "counterfactual@0", 12.75)[
      "argmax"]) == 2


def test_smoothing_is_cached_per_model_and_recomputed_when_its_settings_change(
    tiny_study, tmp_path, monkeypatch):
  """A killed attack stage keeps each model's certificates (out_dir/stages/NAME.smoothing.json):
  a rerun reads them back, equal, and certifies nothing; other settings certify again."""
  _, workdir, _ = tiny_study
  from ccmnist.attacks import run as attack_run  # pylint: disable=import-outside-toplevel
  from ccmnist.attacks import suite as suite_lib  # pylint: disable=import-outside-toplevel
  settings = study_config.get_config("tiny").attack.settings
  settings.suite.enabled = False
  settings.smoothing.models = "counterfactual@0"
  runs = {"counterfactual@0": (layout.run_dir(workdir, "counterfactual"), [0])}
  out = tmp_path / "attack"
  first = json.loads(json.dumps(attack_run.attack_runs(runs, settings, out)["smoothing"]))
  assert (out / "stages" / "counterfactual@0.smoothing.json").exists()
  calls, certify = [], suite_lib.certify_model
  monkeypatch.setattr(suite_lib, "certify_model",
                      lambda *a, **kw: calls.append(1) or certify(*a, **kw))
  (out / "attack.json").unlink()  # As if killed after the model's certificates were written.
  again = json.loads(json.dumps(attack_run.attack_runs(runs, settings, out)["smoothing"]))
  assert calls == [] and again == first
  assert first["models"]["counterfactual@0"]["sigmas"]
  settings.smoothing.n = 2 * settings.smoothing.n
  attack_run.attack_runs(runs, settings, out)
  assert calls == [1]


def test_a_workdir_moved_whole_keeps_its_finished_attack_stages(tiny_study, tmp_path,
                                                                 monkeypatch):
  """The caches name a run by its path from the attack's directory, so a study folder copied or
  moved elsewhere reads its sweeps and certificates back instead of recomputing them."""
  _, workdir, _ = tiny_study
  from ccmnist.attacks import run as attack_run  # pylint: disable=import-outside-toplevel
  from ccmnist.attacks import suite as suite_lib  # pylint: disable=import-outside-toplevel
  settings = study_config.get_config("tiny").attack.settings
  settings.suite.enabled = False
  settings.smoothing.models = "counterfactual@0"
  shutil.copytree(layout.run_dir(workdir, "counterfactual"), tmp_path / "a" / "runs" / "cf")
  runs_at = lambda root: {"counterfactual@0": (root / "runs" / "cf", [0])}
  first = attack_run.attack_runs(runs_at(tmp_path / "a"), settings, tmp_path / "a" / "attack")
  shutil.move(tmp_path / "a", tmp_path / "b")
  (tmp_path / "b" / "attack" / "attack.json").unlink()  # Only the per-model caches are left.

  def recomputed(*args, **kwargs):
    raise AssertionError("a finished stage was computed again")
  monkeypatch.setattr(suite_lib, "certify_model", recomputed)
  monkeypatch.setattr(attack_run, "_attack_model", recomputed)
  again = attack_run.attack_runs(runs_at(tmp_path / "b"), settings, tmp_path / "b" / "attack")
  assert again["runs"] == first["runs"] == {"counterfactual@0": ["../runs/cf", [0]]}
  assert json.dumps(again["smoothing"]) == json.dumps(first["smoothing"])
