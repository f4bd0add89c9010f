"""The step-size findings and section on hand-made records: what moves plain ERM's hard-set
accuracy (step size, training length, adaptivity), each with the runs that show it."""

import pytest

from ccmnist.report import findings
from ccmnist.report import sections
from ccmnist.report import verdicts


def _stat(values):
  return {"mean": sum(values) / len(values), "std": 0.0, "n": len(values), "values": values}


def _point(seeds=3, losses=None, lr=None, **acc):
  point = {"lam": 0.0, "seeds": list(range(seeds)),
           "accuracy": {k: _stat(v) for k, v in acc.items()}}
  if lr is not None:
    point["lr"] = lr
  if losses is not None:
    point["train_loss"] = losses
  return point


def _res(*, val_unbiased=True, long_losses=None) -> dict:
  """erm_sgd_lr over 3 lrs (test_hard best at 0.1, val_unbiased best at 0.01), cheater_long
  (10 epochs, 3 seeds) and erm_adam, all 3 seeds."""
  hard = {1e-3: [0.05, 0.06, 0.07], 1e-2: [0.35, 0.38, 0.36], 1e-1: [0.50, 0.45, 0.60]}
  val = {1e-3: [0.1, 0.1, 0.1], 1e-2: [0.5, 0.5, 0.6], 1e-1: [0.4, 0.4, 0.4]}
  grid = [_point(lr=lr, test_hard=hard[lr], train=[0.9] * 3,
                 **({"val_unbiased": val[lr]} if val_unbiased else {}),
                 losses=[[1.0, 0.5 + 0.01 * s] for s in range(3)]) for lr in hard]
  long_losses = long_losses or [[2.0 - 0.1 * e - 0.01 * s * e for e in range(10)]
                                for s in range(3)]
  return {"config": {"runs": {"cheater_long": {"optim": {"name": "sgd", "lr": 1e-3,
                                                         "momentum": 0.0}},
                              "erm_adam": {"optim": {"name": "adam", "lr": 1e-3}}}},
          "runs": {
              "erm_sgd_lr": {"downstream_lam": 0.0, "epochs": 10, "grid": grid},
              "cheater_long": {"downstream_lam": 0.0, "epochs": 40, "grid": [_point(
                  test_hard=[0.15, 0.17, 0.16], train=[0.96] * 3, losses=long_losses)]},
              "erm_adam": {"downstream_lam": 0.0, "epochs": 10, "grid": [_point(
                  test_hard=[0.20, 0.30, 0.25], train=[0.97] * 3)]}}}


def test_step_size_is_judged_at_the_lr_chosen_on_val_unbiased_with_the_choice_corrected():
  step, length, falls, adapt = findings.step_size_findings(_res())
  assert step["runs"] == ["erm_sgd_lr[lr=0.001]", "erm_sgd_lr[lr=0.01]"]  # Not 0.1 (test_hard).
  assert "chosen on val_unbiased among 3" in step["rule"] and "p × 2" in step["rule"]
  raw = verdicts.paired_test([0.05, 0.06, 0.07], [0.35, 0.38, 0.36])
  assert step["p"] == pytest.approx(min(1.0, 2 * raw["p"]))  # Chosen among 2 other points.
  assert step["family"] == 4 and step["p_holm"] >= step["p"] and step["holds"] is True
  assert step["run_seeds"] == [[0, 1, 2]] * 2 and step["key"] == "step_size"  # The summary.
  raw = verdicts.paired_test([0.35, 0.38, 0.36], [0.20, 0.30, 0.25])
  assert adapt["runs"] == ["erm_sgd_lr[lr=0.01]", "erm_adam"] and "matched epochs" in adapt["rule"]
  assert adapt["p"] == pytest.approx(min(1.0, 3 * raw["p"]))
  assert adapt["holds"] is not True  # Adam lies below SGD at its best lr.
  # Longer at lr 1e-3: +0.10, +0.11, +0.09 on the hard set, against 10 epochs.
  assert length["runs"] == ["erm_sgd_lr[lr=0.001]", "cheater_long"] and length["holds"] is True
  assert "cheater_long (40 epochs)" in length["rule"] and "(10 epochs" in length["rule"]


def test_the_long_runs_loss_is_read_over_its_last_10_percent_of_epochs():
  _, _, falls, _ = findings.step_size_findings(_res())
  # 10 epochs: epoch 9 against epoch 10; seed s falls by 0.1 + 0.01 s.
  assert falls["runs"] == ["cheater_long[epoch 9]", "cheater_long[epoch 10]"]
  assert falls["measured"] == "cheater_long[epoch 9] 1.1200, cheater_long[epoch 10] 1.0100"
  assert falls["holds"] is True
  flat = [[1.0] * 8 + [0.5, 0.5 + d] for d in (0.01, -0.01, 0.02)]
  _, _, falls, _ = findings.step_size_findings(_res(long_losses=flat))
  assert falls["holds"] is None  # Up, down, up: no fall, nor a resolved rise.
  assert findings.loss_tail({"train_loss": [[3.0, 2.0, 1.0]]}) == (2, 3, ([2.0], [1.0]))
  assert findings.loss_tail({"train_loss": [[3.0] * 40]})[:2] == (36, 40)


def test_without_val_unbiased_the_choice_is_on_test_hard_and_said_so():
  step, _, _, adapt = findings.step_size_findings(_res(val_unbiased=False))
  assert step["runs"][1] == "erm_sgd_lr[lr=0.1]"
  assert "chosen on test_hard itself among 3 (no val_unbiased split)" in step["rule"]
  assert adapt["runs"][0] == "erm_sgd_lr[lr=0.1]"


def test_missing_runs_are_not_measured_and_join_the_studys_family():
  got = findings.step_size_findings({"runs": {}})
  assert [f["strength"] for f in got] == ["not measured"] * 4
  res = {**_res(), "attack": {"models": {}}}
  res["runs"]["cheater"] = {"downstream_lam": 0.0, "grid": [_point(
      test_hard=[0.05, 0.06, 0.07], test_easy=[0.95, 0.96, 0.97])]}
  rows = findings.findings(res)
  claims = [f["claim"] for f in rows]
  assert not any("optimizer moves" in c or "whatever the optimizer" in c for c in claims)
  mine = [f for f in rows if f["claim"] in {g["claim"] for g in got}]
  assert len(mine) == 4
  # One family: the cheater's shortcut claim, erm_adam's threshold and the 4 step-size rows.
  assert {f["family"] for f in mine} == {6}


def test_section_lists_every_lr_the_long_run_and_the_controls():
  lines = []
  sections.section_step_size(_res(), lines)
  md = "\n".join(lines)
  assert "| erm_sgd_lr (best on val_unbiased) | 0.01 | 10 |" in md
  assert "| erm_sgd_lr | 0.1 | 10 | 90.0 ± 0.0 | 51.7 ± 0.0 | 40.0 ± 0.0 | 0.5100 |" in md
  assert "| cheater_long | 0.001 | 40 | 96.0 ± 0.0 | 16.0 ± 0.0 | n/a | 1.0100 |" in md
  assert md.count("| erm_sgd_lr") == 3 and "| erm_adam (Adam) | 0.001 | 10 |" in md
  lines = []
  sections.section_step_size({"runs": {"cheater": {}}}, lines)
  assert lines == []


def test_step_size_is_untestable_while_the_study_lr_has_not_left_its_plateau():
  res = _res()
  res["runs"]["erm_sgd_lr"]["grid"][0]["accuracy"]["train"] = _stat([0.21, 0.22, 0.9])
  step, length = findings.step_size_findings(res)[:2]
  assert step["holds"] is None and step["strength"].startswith("untestable")
  assert "lr 0.001 underfits (train 21.0%, 22.0%: 2 of 3 seeds" in step["strength"]
  assert step["family"] == 3  # Outside the Holm family.
  assert length["holds"] is True  # Training longer from the plateau is what `length` tests.
