"""The whole study end to end on the tiny config (synthetic digits): every stage and section."""

import json

import pytest

from ccmnist import layout
from ccmnist import study
from ccmnist.report import report as report_lib
from configs import study as study_config


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("study")
  cfg = study_config.get_config("tiny")
  times = study.run_study(cfg, workdir)
  return cfg, workdir, times


def test_every_stage_ran_and_report_has_every_section(tiny_study):
  _, workdir, times = tiny_study
  assert set(times) == set(study.STAGES)
  report = (workdir / "report.md").read_text()
  for heading in ("## Findings", "## 1. The cheater", "## 2a. Input-gradient penalty",
                  "## 2b. Counterfactual", "## 2c. Color-gradient penalty", "## 3. Grad-CAM",
                  "## 4. Targeted PGD",
                  "## 5. Transfer", "## 6. Every model side by side", "## 7. Choosing λ",
                  "## 8. Channel selectivity", "## 9. Minimal epsilon", "## How this was made"):
    assert heading in report, heading
  assert "(study: 24.3)" in report and "(study: 85.2)" in report
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["runs"]) == set(layout.TRAIN_RUNS)
  assert len(results["runs"]["counterfactual"]["grid"]) == 5
  assert set(results["model_selection"]["counterfactual"]) == {"test_hard", "val",
                                                                 "val_unbiased"}
  for point in results["runs"]["cheater"]["grid"]:
    assert 0.0 <= point["accuracy"]["test_hard"]["mean"] <= 1.0
  assert results["interpret"]["models"] and results["attack"]["models"]
  assert [f["holds"] is not None for f in results["findings"]] == [True] * 4
  assert results["findings"][1]["holds"] == (  # lambda 0.5, the study's.
      results["runs"]["counterfactual"]["grid"][2]["accuracy"]["test_hard"]["mean"] >= 0.7)
  for link in ("figures/training_curves.png", "figures/samples_train.png"):
    assert link in report and (workdir / link).exists()


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
  with pytest.raises(ValueError, match="Unknown run"):
    layout.downstream_runs(cfg, ".", "cheater,resnet")
  with pytest.raises(ValueError, match="Unknown config variant"):
    study_config.get_config("huge")


def _res(hard: dict, easy: float, pgd: dict) -> dict:
  """A hand-made collect() result: one grid point per run, and an attack sweep."""
  runs = {n: {"downstream_lam": 0.0, "grid": [{"lam": 0.0, "accuracy": {
      "test_hard": {"mean": h}, "test_easy": {"mean": easy}}}]} for n, h in hard.items()}
  models = {n: {"sweep": {"epsilons": [5.0, 12.75], "success_prob": [0.0, p]}}
            for n, p in pgd.items()}
  return {"runs": runs, "attack": {"models": models}}


def test_findings_apply_their_rules():
  res = _res({"cheater": 0.06, "gradient_penalty": 0.4, "counterfactual": 0.8}, 0.95,
             {"cheater": 0.98, "counterfactual": 0.67})
  assert [f["holds"] for f in report_lib.findings(res)] == [True, True, True, True]
  res = _res({"cheater": 0.6, "gradient_penalty": 0.5, "counterfactual": 0.69}, 0.95,
             {"cheater": 0.04, "counterfactual": 0.65})
  assert [f["holds"] for f in report_lib.findings(res)] == [False, False, False, False]
  assert [f["holds"] for f in report_lib.findings(_res({"cheater": 0.06}, 0.95, {}))] == [
      True, None, None, None]  # Not measured is neither a pass nor a failure.
