"""configs.common.parse_arg: every config's variant syntax, and its errors; the benchmark's table
made from the method registry."""

import importlib

import pytest

from ccmnist.train import methods
from configs import common
from configs import zoo

CONFIGS = ("attack", "zoo", "cheater", "color_gradient_penalty", "counterfactual", "data",
           "erm_adam", "gradient_penalty", "interpret", "study")


def test_parse_arg_defaults_bare_values_and_keys():
  opts = dict(optimizer=("adam", "momentum"))
  assert common.parse_arg(None, **opts).to_dict() == {"size": "full", "optimizer": "adam"}
  assert common.parse_arg("", **opts).to_dict() == {"size": "full", "optimizer": "adam"}
  assert common.parse_arg("momentum,quick", **opts).to_dict() == {
      "size": "quick", "optimizer": "momentum"}
  assert common.parse_arg("size=tiny, optimizer=momentum", **opts).to_dict() == {
      "size": "tiny", "optimizer": "momentum"}


@pytest.mark.parametrize("arg", ["huge", "size=huge", "colour=quick", "momentum_quick", "adam"])
def test_parse_arg_refuses_what_it_does_not_know(arg):
  with pytest.raises(ValueError, match="Unknown config variant") as e:
    common.parse_arg(arg)  # No optimizer field here: 'adam' is unknown too.
  assert "size: full|quick|tiny" in str(e.value)  # The message says what is allowed.


def test_a_bare_value_two_fields_allow_is_ambiguous():
  with pytest.raises(ValueError, match="Unknown config variant 'x'"):
    common.parse_arg("x", a=("x", "y"), b=("z", "x"))
  assert common.parse_arg("b=x", a=("x", "y"), b=("z", "x")).b == "x"


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_takes_the_sizes_and_refuses_others(name):
  module = importlib.import_module(f"configs.{name}")
  for size in (None, "full", "quick", "tiny"):
    assert module.get_config(size).is_locked
  with pytest.raises(ValueError, match="Unknown config variant"):
    module.get_config("huge")


# The benchmark's table as it was written out by hand before the registry declared it:
# entry -> (loss, full grid, quick and tiny grid, title, needs, needs_setting, warmup_epochs).
HAND_TABLE = {
    "erm": ("erm", (0.0,), (0.0,), "ERM", "", "", 0),
    "gradient_penalty": ("gradient_penalty", (10.0, 100.0, 1000.0), (100.0,),
                         "input-gradient penalty (the study's)", "", "", 0),
    "consistency": ("consistency", (0.1, 0.5, 2.0), (0.5, 2.0),
                    "counterfactual consistency (the study's)", "", "", 0),
    "groupdro": ("groupdro", (0.001, 0.01, 0.1), (0.01, 0.1), "Group DRO", "", "", 0),
    "reweight": ("reweight", (0.0,), (0.0,), "group reweighting", "", "", 0),
    "balanced_sampling": ("balanced_sampling", (0.0,), (0.0,), "group-balanced sampling", "",
                          "", 0),
    "dfr": ("dfr", (1e-3, 3e-3, 1e-2, 3e-2), (3e-3, 3e-2), "DFR (last layer refit)", "erm", "",
            0),
    "irm": ("irm", (1e2, 1e3, 1e4, 1e5), (1e4,), "IRMv1", "", "", 1),
    "vrex": ("vrex", (2e2, 2e3, 2e4), (2e4,), "V-REx", "", "", 1),
    "jtt": ("jtt", (5.0, 20.0, 50.0, 100.0), (20.0,), "JTT", "identify", "reference", 0),
    "lff": ("lff", (0.0,), (0.0,), "LfF", "", "", 0),
    "eiil": ("eiil", (1e2, 1e3, 1e4, 1e5), (1e4,), "EIIL", "erm", "reference", 1),
    "random_recolor": ("random_recolor", (0.0,), (0.0,), "random recoloring", "", "", 0),
    "cf_augment": ("cf_augment", (0.0,), (0.0,), "counterfactual augmentation (no consistency)",
                   "", "", 0),
    "grayscale": ("erm", (0.0,), (0.0,), "grayscale oracle (ERM on grey digits)", "", "", 0),
    "identify": ("erm", (0.0,), (0.0,), "ERM identification run (JTT)", "", "", 0),
}


@pytest.mark.parametrize("size", ["full", "quick", "tiny"])
def test_the_zoo_table_from_the_registry_equals_the_hand_written_one(size):
  table = zoo.zoo(size)
  assert set(HAND_TABLE) <= set(table)  # A method registered since joins the table.
  for name, (loss, full, quick, title, needs, needs_setting, warmup) in HAND_TABLE.items():
    e = table[name]
    got = (e.loss, tuple(e.lam_grid), e.title, e.needs, e.needs_setting, e.warmup_epochs)
    want = (loss, full if size == "full" else quick, title, needs, needs_setting, warmup)
    assert got == want, name
    named = {"l2": 0.0} if size == "full" and name == "groupdro" else {}  # Its family's setting.
    assert e.settings.to_dict() == named, name
    assert e.epochs_fraction == (0.2 if name == "identify" else 1.0), name
  assert table.grayscale.data.to_dict() == {"grayscale": True} and table.grayscale.oracle
  assert sorted(n for n in table if table[n].oracle) == ["grayscale", "random_recolor"]
  listed = [n for n in zoo.get_config(size).methods.split(",") if n in HAND_TABLE]
  assert listed == [n for n in HAND_TABLE if n != "identify"]


def test_the_full_zoo_grids_group_dro_l2_and_jtt_t_as_families():
  from ccmnist.zoo import plan  # pylint: disable=g-import-not-at-top
  c = zoo.get_config("full")
  assert plan.members_of(c, "groupdro") == tuple(
      f"groupdro_l2_{v}" for v in ("0p0001", "0p1", "1"))
  assert [c.zoo[m].settings.l2 for m in plan.members_of(c, "groupdro")] == [1e-4, 0.1, 1.0]
  assert plan.members_of(c, "jtt") == ("jtt_t0p02", "jtt_t0p4")
  assert [c.zoo[c.zoo[m].needs].epochs_fraction for m in plan.members_of(c, "jtt")] == [0.02, 0.4]
  order = plan.entry_order(c)
  assert order.index("identify_t0p02") < order.index("jtt_t0p02")
  assert "groupdro_l2_1" not in zoo.get_config("quick").zoo  # Quick and tiny: one grid each.
  c.unlock()
  c.families = False
  assert plan.members_of(c, "groupdro") == () and "jtt_t0p4" not in plan.entry_order(c)


def test_the_zoo_lists_every_benchmarked_method_in_registry_order():
  listed = [n for n, m in methods.METHODS.items() if m.benchmark is not None]
  assert list(zoo.ZOO) == listed + list(zoo.EXTRA)
  assert "color_gradient_penalty" in methods.METHODS and "color_gradient_penalty" not in zoo.ZOO
