"""The benchmark's metrics, selection rules and what each method is told, on hand-built numbers."""

import numpy as np
import pytest

from ccmnist.zoo import entries
from ccmnist.zoo import evaluate
from ccmnist.zoo import select
from configs import zoo as zoo_config


def _cells():
  """Four (digit, color) cells of 4, 1, 2 and 3 examples, right on 3, 0, 2 and 1 of them."""
  labels = np.array([0] * 4 + [0] + [1] * 2 + [1] * 3)
  colors = np.array([0] * 4 + [1] + [1] * 2 + [0] * 3)
  preds = np.array([0, 0, 0, 5] + [5] + [1, 1] + [1, 5, 5])
  return preds, labels, colors


def test_group_balanced_averages_cells_not_examples():
  preds, labels, colors = _cells()
  assert evaluate.cell_accuracies(preds, labels, colors) == pytest.approx([0.75, 0.0, 1 / 3, 1.0])
  by_hand = (3 / 4 + 0 / 1 + 1 / 3 + 2 / 2) / 4
  assert evaluate.group_balanced_accuracy(preds, labels, colors) == pytest.approx(by_hand)
  plain = 6 / 10
  assert evaluate.group_balanced_accuracy(preds, labels, colors) != pytest.approx(plain)
  assert evaluate.worst_cell_accuracy(preds, labels, colors) == 0.0
  # Equal cells: the two agree.
  assert evaluate.group_balanced_accuracy(labels, labels, colors) == 1.0
  assert evaluate.group_balanced_accuracy([], [], []) is None
  with pytest.raises(ValueError, match="one length"):
    evaluate.group_balanced_accuracy(preds, labels, colors[:3])


def test_replica_measures_hold_the_cell_and_group_measures_of_test_and_val_unbiased():
  preds, labels, colors = _cells()
  split = {"labels": labels, "colors": colors, "aligned": labels == colors}
  got = evaluate.replica_measures({"test_easy": preds, "val_unbiased": preds},
                                  {"test_easy": split, "val_unbiased": split})
  assert set(got) == set(evaluate.MEASURES)
  assert got["unbiased"] == pytest.approx(0.6) and got["val_unbiased"] == pytest.approx(0.6)
  assert got["group_balanced"] == pytest.approx((0.75 + 0 + 1 / 3 + 1) / 4)
  assert got["val_unbiased_group_balanced"] == got["group_balanced"]
  # digit 0 conflicting (color 1): 0 of 1; digit 1 conflicting (color 0): 1 of 3.
  assert got["worst_cell"] == 0.0 and got["worst_group"] == 0.0
  assert got["val_unbiased_worst_group"] == 0.0
  assert got["val"] is None and got["test_hard"] is None


def _point(g, val, group_val, oracle):
  measures = {m: [0.5, 0.5] for m in evaluate.MEASURES}
  measures.update(val=val, val_unbiased_worst_group=group_val, group_balanced=oracle)
  return {"lam": float(g), "seeds": [0, 1], "measures": measures}


def test_the_three_rules_pick_three_different_points():
  grid = [_point(0, [0.99, 0.97], [0.1, 0.2], [0.30, 0.40]),
          _point(1, [0.90, 0.92], [0.5, 0.4], [0.50, 0.56]),
          _point(2, [0.80, 0.82], [0.3, 0.4], [0.70, 0.60])]
  got = select.select(grid)
  assert {w: s["lam"] for w, s in got.items()} == {"val": 0.0, "group_val": 1.0, "oracle": 2.0}
  assert got["group_val"]["criterion"] == "val_unbiased_worst_group"
  assert got["group_val"]["score"] == pytest.approx(0.45)
  assert got["oracle"]["measures"]["group_balanced"]["values"] == [0.70, 0.60]
  # A tie of worst groups goes to the better group-balanced val_unbiased, then to the first.
  tied = [_point(g, [0.5, 0.5], [0.0, 0.0], [0.5, 0.5]) for g in range(3)]
  for g, v in enumerate([0.2, 0.4, 0.4]):
    tied[g]["measures"]["val_unbiased_group_balanced"] = [v, v]
  assert select.select(tied)["group_val"]["lam"] == 1.0
  assert select.select_point(tied, "val_unbiased_worst_group") == 0
  assert select.select_point(tied, "missing") is None


def test_each_method_is_selected_by_what_it_may_know():
  bench = zoo_config.get_config("quick")
  rule = {n: entries.headline_rule(bench, n) for n in bench.zoo}
  for n in ("groupdro", "reweight", "balanced_sampling", "dfr", "jtt", "eiil"):
    assert rule[n] == "group_val", n
  for n in ("erm", "lff", "gradient_penalty", "grayscale", "random_recolor"):
    assert rule[n] == "val", n
  assert bench.zoo.random_recolor.oracle and bench.zoo.grayscale.oracle
  assert not bench.zoo.erm.oracle and not bench.zoo.lff.oracle


def test_group_labelled_examples_seen_come_from_the_config():
  bench = zoo_config.get_config("quick")
  d = bench.protocols.lff.data
  seen = lambda n: entries.group_labels_seen(bench, "lff", n)
  assert seen("erm") == seen("lff") == seen("grayscale") == 0
  assert seen("groupdro") == seen("reweight") == d.train_size + d.val_unbiased_size
  assert seen("irm") == d.train_size  # Environments from the aligned flag, selected on val.
  assert seen("jtt") == seen("eiil") == d.val_unbiased_size
  assert seen("dfr") == d.val_balanced_size + d.val_unbiased_size
  assert (d.train_size, d.val_unbiased_size, d.val_balanced_size) == (10_000, 500, 1_000)
  assert entries.group_labels_seen(bench, "lff", "groupdro", rule="val") == d.train_size


def _family_bench():
  """The tiny benchmark with a second Group DRO grid (L2 0.01) as a family member."""
  c = zoo_config.build("tiny")
  c.zoo.groupdro_l2 = zoo_config._entry("groupdro", (0.5,), title="Group DRO, L2 0.01",
                                        settings={"l2": 0.01}, family="groupdro",
                                        label="L2 0.01")
  c.methods = "erm,groupdro"
  return c


def test_a_family_trains_with_its_row_and_is_selected_over_both_grids(tmp_path):
  from ccmnist.util import io  # pylint: disable=g-import-not-at-top
  from ccmnist.zoo import plan  # pylint: disable=g-import-not-at-top
  from ccmnist.zoo import stages  # pylint: disable=g-import-not-at-top
  bench = _family_bench()
  assert plan.method_entries(bench) == ("erm", "groupdro")
  assert plan.entry_order(bench) == ("erm", "groupdro", "groupdro_l2")
  run = plan.Run("lff", "lff_mlp", 0.05, "groupdro")
  grids = {"groupdro": [_point(0, [0.9, 0.9], [0.1, 0.1], [0.3, 0.3])],
           "groupdro_l2": [_point(0, [0.8, 0.8], [0.6, 0.5], [0.7, 0.6])]}
  for entry, grid in grids.items():
    io.write_json(plan.run_dir(tmp_path, plan.Run("lff", "lff_mlp", 0.05, entry))
                  / evaluate.EVAL_FILE, {"grid": grid})
  got = select.select(stages.family_grid(bench, tmp_path, run))
  assert {w: s["entry"] for w, s in got.items()} == {
      "val": "groupdro", "group_val": "groupdro_l2", "oracle": "groupdro_l2"}
  # A run without a family keeps its own points, entry None.
  io.write_json(plan.run_dir(tmp_path, plan.Run("lff", "lff_mlp", 0.05, "erm"))
                / evaluate.EVAL_FILE, {"grid": grids["groupdro"]})
  own = stages.family_grid(bench, tmp_path, plan.Run("lff", "lff_mlp", 0.05, "erm"))
  assert [p["entry"] for p in own] == [None]
  assert stages.family_grid(bench, tmp_path, plan.Run("lff", "lff_mlp", 0.02, "erm")) is None


def test_a_family_member_is_not_a_row_and_must_extend_a_row():
  from ccmnist.zoo import plan  # pylint: disable=g-import-not-at-top
  bench = _family_bench()
  bench.methods = "erm,groupdro_l2"
  with pytest.raises(ValueError, match="a grid of the 'groupdro' entry: name that entry"):
    plan.method_entries(bench)
  bench = _family_bench()
  bench.zoo.groupdro_l2.family = "groupdro_x"
  with pytest.raises(ValueError, match="family='groupdro_x' must name an entry"):
    plan.check_entry(bench, "groupdro_l2")
