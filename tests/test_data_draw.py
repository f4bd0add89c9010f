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


def test_cell_values_gather_one_entry_over_workdirs():
  def res(values):
    sel = {"val": {"measures": {"group_balanced": {"values": values}}}}
    return {"runs": {"lff/m/rho0.99/erm": {"entry": "erm", "selection": sel},
                     "lff/m/rho0.99/lff": {"entry": "lff", "selection": sel}}}
  got = data_draw.cell_values([res([0.1, 0.2]), res([0.3, 0.4])], "erm", "group_balanced", "val")
  assert got == {"lff/m/rho0.99": [[0.1, 0.2], [0.3, 0.4]]}
