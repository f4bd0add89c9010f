"""tools/tuned_overrides.py on a hand-built tuning record."""

import pathlib
import sys

import pytest

from configs import zoo as zoo_config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import tuned_overrides  # pylint: disable=g-import-not-at-top,wrong-import-position


def _run(lam, entry=None, rule="val"):
  return {"selection": {rule: {"lam": lam, "entry": entry}}}


def test_each_row_takes_its_headline_choice_and_a_members_settings():
  bench = zoo_config.get_config("full")
  cell = "lff/lff_mlp/rho0.99"
  res = {"runs": {f"{cell}/erm": _run(0.0), f"{cell}/jtt": _run(50.0, "jtt_t0p02", "group_val"),
                  f"{cell}/groupdro": _run(0.01, "groupdro_l2_0p1", "group_val"),
                  f"{cell}/lff": _run(0.0, None)}}
  bench.unlock()
  bench.methods = "erm,groupdro,jtt,lff"
  got = tuned_overrides.overrides(bench, res)
  assert got == ["--config.zoo.erm.lam_grid=(0.0,)",
                 "--config.zoo.groupdro.lam_grid=(0.01,)",
                 "--config.zoo.groupdro.settings.l2=0.1",
                 "--config.zoo.jtt.lam_grid=(50.0,)",
                 "--config.zoo.jtt.needs=identify_t0p02",
                 "--config.zoo.lff.lam_grid=(0.0,)",
                 "--config.families=False"]
  res["runs"]["lff/lff_mlp/rho0.95/erm"] = _run(0.0)
  with pytest.raises(ValueError, match="holds 2 cells"):
    tuned_overrides.overrides(bench, res)
  del res["runs"]["lff/lff_mlp/rho0.95/erm"]
  del res["runs"][f"{cell}/jtt"]["selection"]["group_val"]
  with pytest.raises(ValueError, match="jtt has no group_val selection"):
    tuned_overrides.overrides(bench, res)
