"""tools/data_draw.py's variance split, on hand-computed numbers."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import data_draw  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_components_split_the_variance_by_hand():
  # Draw means 0.5 and 0.7; within-draw variances 0.02 and 0.08 (ddof 1, 2 seeds each).
  v = [[0.4, 0.6], [0.5, 0.9]]
  c = data_draw.components(v)
  within = (0.02 + 0.08) / 2
  between = 0.02 - within / 2  # var([0.5, 0.7], ddof 1) = 0.02.
  assert c["within_sd"] == pytest.approx(within ** 0.5)
  assert c["between_sd"] == pytest.approx(max(between, 0.0) ** 0.5)
  assert c["draw_means"] == pytest.approx([0.5, 0.7])
  # Draw means 0.5 and 0.9 (variance 0.08), within 0.02: between 0.08 - 0.02 / 2.
  assert data_draw.components([[0.4, 0.6], [0.8, 1.0]])["between_sd"] == pytest.approx(0.07 ** 0.5)
  # Identical draws: nothing between them.
  assert data_draw.components([[0.1, 0.3], [0.1, 0.3]])["between_sd"] == 0.0
  with pytest.raises(ValueError, match="need >= 2 draws"):
    data_draw.components([[0.1, 0.2]])


def test_the_f_test_of_the_draws_by_hand():
  # Draw means 0.5 and 0.9 around 0.7: between-draw mean square 2 * (0.04 + 0.04) / 1 = 0.16;
  # within: (0.02 + 0.02) / 2 = 0.02. F = 8 on (1, 2) df, the square of t(2) = sqrt(8), whose
  # two-sided p is 1 - t / sqrt(2 + t^2).
  c = data_draw.components([[0.4, 0.6], [0.8, 1.0]])
  assert c["f"] == pytest.approx(8.0)
  assert c["df"] == [1, 2]
  assert c["p"] == pytest.approx(1 - (8 / 10) ** 0.5)


def _config(seed, ratios=(0.01,), only=""):
  return {"ratios": list(ratios), "only": only,
          "protocols": {"lff": {"data": {"seed": seed, "rho_train": 0.99}}}}


def test_workdirs_must_differ_in_the_data_seed_alone():
  data_draw.check_draws([_config(0), _config(1), _config(2, only="report")], ["a", "b", "c"])
  with pytest.raises(ValueError, match="b differs from a in more than the data seed .ratios"):
    data_draw.check_draws([_config(0), _config(1, ratios=(0.05,))], ["a", "b"])
  with pytest.raises(ValueError, match="c and a hold the same color draw"):
    data_draw.check_draws([_config(0), _config(1), _config(0)], ["a", "b", "c"])


def test_cell_values_gather_one_entry_over_workdirs():
  def res(values):
    sel = {"val": {"measures": {"group_balanced": {"values": values}}}}
    return {"runs": {"lff/m/rho0.99/erm": {"entry": "erm", "selection": sel},
                     "lff/m/rho0.99/lff": {"entry": "lff", "selection": sel}}}
  got = data_draw.cell_values([res([0.1, 0.2]), res([0.3, 0.4])], "erm", "group_balanced", "val")
  assert got == {"lff/m/rho0.99": [[0.1, 0.2], [0.3, 0.4]]}
