"""Published numbers and protocols: every table complete and sourced, every setting sourced."""

import copy
import math
import re

import pytest

from ccmnist.zoo import published

SOURCE_PART = re.compile(r"^(\S+\.(py|md|sh):\d+(-\d+)?(,\d+(-\d+)?)*( \(.+\))?|github\.com/\S+)$")


def full_table():
  """A well-formed table with made-up numbers: the shape check_table demands."""
  rows = {m: {r: (10.0 + i, 0.5) for i, r in enumerate(published.RATIOS)}
          for m in ("Vanilla", "LfF")}
  return {"paper": "Someone et al.", "table": "Table 9", "source": "repo@commit:README.md:1-9",
          "metric": "unbiased test accuracy", "ratio_convention": "conflicting fraction",
          "caveats": "none known", "rows": rows}


@pytest.fixture(name="one_table")
def fixture_one_table(monkeypatch):
  monkeypatch.setattr(published, "TABLES", {"made_up": full_table()})
  return published.TABLES["made_up"]


def test_both_papers_are_accounted_for_and_every_table_is_complete():
  quoted, unquoted = set(published.TABLES), set(published.UNQUOTED)
  assert not quoted & unquoted, "a table is either quoted or listed as unquoted, not both"
  ids = quoted | unquoted
  assert any(i.startswith("lff") for i in ids) and any(i.startswith("dfa") for i in ids)
  for name, table in published.TABLES.items():
    published.check_table(name, table)
  for name, why in published.UNQUOTED.items():
    assert isinstance(why, str) and "not read" in why, name


def test_check_table_accepts_a_full_table_and_a_missing_std():
  published.check_table("made_up", full_table())
  table = full_table()
  table["rows"]["LfF"][0.01] = (50.0, None)  # A source that prints no std.
  published.check_table("made_up", table)


def test_the_quoted_tables_hold_the_sources_numbers():
  a = published.TABLES["dfa2021_table1_via_liu2023"]
  b = published.TABLES["denetdm2024_table1"]
  assert "Liu et al. 2023" in a["paper"] and "2212.01433" in a["source"]
  assert a["rows"]["ERM (vanilla)"][0.005] == (35.19, None)
  assert a["rows"]["LC (Liu et al.)"][0.05] == (91.15, None)
  assert b["rows"]["LfF"][0.01] == (74.01, 2.21) and b["rows"]["JTT"][0.05] == (85.03, 1.10)
  assert all(cell[1] is None for cell in b["rows"]["Group DRO"].values())
  assert all(cell[1] is not None for cell in b["rows"]["ERM (vanilla)"].values())
  got = published.published_accuracy("denetdm2024_table1/Group DRO", 0.02)
  assert got["mean"] == 76.30 and got["std"] is None and "Sreelatha" in got["source"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["rows"]["LfF"].pop(0.02), "exactly the ratios"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.1, (1.0, 0.0)), "exactly the ratios"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (100.5, 0.1)), "must lie in"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (-0.1, 0.1)), "must lie in"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (math.nan, 0.1)), "must lie in"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (50.0, -0.1)), "std"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (50.0, math.inf)), "std"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (50.0,)), "a cell is"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (True, 0.1)), "a cell is"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (None, 0.1)), "a cell is"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, (50.0, "0.1")), "a cell is"),
    (lambda t: t["rows"]["LfF"].__setitem__(0.01, [50.0, None]), "a cell is"),
    (lambda t: t.__setitem__("caveats", ""), "'caveats' must say"),
    (lambda t: t.__setitem__("source", "  "), "'source' must say"),
    (lambda t: t.pop("metric"), "must be a dict with keys"),
    (lambda t: t.__setitem__("rows", {}), "no methods"),
])
def test_check_table_rejects_each_defect(edit, message):
  table = full_table()
  edit(table)
  with pytest.raises(ValueError, match=message):
    published.check_table("made_up", table)


def test_published_accuracy_reads_the_cell_with_its_source(one_table):
  got = published.published_accuracy("made_up/LfF", 0.02)
  assert (got["mean"], got["std"]) == one_table["rows"]["LfF"][0.02] == (12.0, 0.5)
  assert "Table 9" in got["source"] and "README.md" in got["source"]
  # A ratio computed from rho_train names the same cell.
  assert published.published_accuracy("made_up/Vanilla", 1 - 0.995)["mean"] == 10.0


@pytest.mark.parametrize("name, ratio, message", [
    ("made_up/LfF", 0.03, "not a published ratio"),
    ("made_up/LfF", "1pct", "not a published ratio"),
    ("made_up/JTT", 0.01, "lists no method 'JTT'"),
    ("nowhere/LfF", 0.01, "unknown table 'nowhere'"),
    ("made_up", 0.01, "expected '<table id>/<method>'"),
    ("/LfF", 0.01, "expected '<table id>/<method>'"),
])
def test_published_accuracy_rejects_bad_requests(one_table, name, ratio, message):
  del one_table
  with pytest.raises(ValueError, match=message):
    published.published_accuracy(name, ratio)


def test_unquoted_tables_give_none_but_still_check_the_ratio():
  for table_id in published.UNQUOTED:
    for ratio in published.RATIOS:
      assert published.published_accuracy(f"{table_id}/LfF", ratio) is None
    with pytest.raises(ValueError, match="not a published ratio"):
      published.published_accuracy(f"{table_id}/LfF", 0.5)


def test_tables_returns_a_copy(one_table):
  before = copy.deepcopy(one_table)
  got = published.tables()
  got["made_up"]["rows"]["LfF"][0.01] = (0.0, 0.0)
  assert published.TABLES["made_up"] == before


@pytest.mark.parametrize("name", ["lff", "dfa"])
def test_every_protocol_setting_names_the_file_it_was_read_from(name):
  protocol = published.PROTOCOLS[name]
  settings = set(protocol) - {"repo", "paper", "sources"}
  assert settings == set(protocol["sources"]), "each setting needs a source, each source a setting"
  assert re.fullmatch(r"github\.com/\S+@[0-9a-f]{40}", protocol["repo"])
  for key, source in protocol["sources"].items():
    for part in source.split("; "):
      assert SOURCE_PART.match(part), f"{name}.{key}: {part!r} is not 'path:lines' or a URL"


def test_protocol_numbers_agree_with_each_other():
  lff, dfa = published.PROTOCOLS["lff"], published.PROTOCOLS["dfa"]
  assert lff["steps"] == lff["steps_per_epoch"] * lff["epochs"]
  # 60000 images in batches of 256, the last one partial.
  assert lff["steps_per_epoch"] == math.ceil(lff["split_sizes"]["train"] / lff["batch_size"])
  assert sorted(lff["ratio_configs"]) == sorted(published.RATIOS)
  stds = [lff["color_std_by_severity"][s] for s in sorted(lff["color_std_by_severity"])]
  assert all(a > b > 0 for a, b in zip(stds, stds[1:])), "higher severity, less jitter"
  assert lff["model"]["widths"][0] == dfa["model"]["encoder_widths"][0] == 3 * 28 * 28
  assert 0 < dfa["curr_step"] < dfa["steps"]
  for protocol in (lff, dfa):
    assert protocol["lr"] > 0 and protocol["batch_size"] == 256 and protocol["gce_q"] == 0.7
