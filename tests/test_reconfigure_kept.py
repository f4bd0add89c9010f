"""A kept folder pointed at another config (zoo/carry.py reconfigure, tools/reconfigure_kept.py):
which methods train again, and what it drops."""

import json
import pathlib
import subprocess
import sys

import pytest

from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import carry
from configs import zoo as zoo_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(**zoo_overrides) -> dict:
  """The full benchmark config as its config.json holds it, with zoo overrides {path: value}."""
  c = zoo_config.get_config("full")
  c.update_from_flattened_dict({f"zoo.{k}": v for k, v in zoo_overrides.items()})
  return json.loads(workdir_lib.config_json(c))


def test_a_changed_entry_its_family_and_the_runs_that_read_it_train_again():
  old = _config()
  got = carry.entries_to_retrain(old, _config(**{"jtt.lam_grid": (20.0,)}))
  assert set(got) == {"jtt", "jtt_t0p02", "jtt_t0p4"} and "lam_grid" in got["jtt"]
  assert got["jtt_t0p02"] == "a member of jtt's family"
  # JTT and its family members read the identification runs.
  got = carry.entries_to_retrain(old, _config(**{"identify.epochs_fraction": 0.3}))
  assert set(got) == {"identify", "jtt", "jtt_t0p02", "jtt_t0p4"}
  assert got["jtt"] == "it needs the identify run"
  # A row named by --retrain takes its family's members; nothing else moves.
  got = carry.entries_to_retrain(old, old, retrain=["groupdro"])
  assert set(got) == {"groupdro", "groupdro_l2_0p0001", "groupdro_l2_0p1", "groupdro_l2_1"}
  assert got["groupdro"] == "named by --retrain"
  assert carry.entries_to_retrain(old, old) == {}


def test_anything_but_the_zoo_entries_is_another_benchmark():
  old, new = _config(), _config()
  new["num_seeds"] = 3
  with pytest.raises(ValueError, match="differ outside their zoo entries .*num_seeds"):
    carry.entries_to_retrain(old, new)
  new = {**old, "only": "report", "stop_early": "jtt"}  # Keys that may change on a workdir.
  assert carry.entries_to_retrain(old, new) == {}
  with pytest.raises(ValueError, match=r"--retrain names \['nope'\]"):
    carry.entries_to_retrain(old, old, retrain=["nope"])


def _folder(tmp_path, config: dict) -> pathlib.Path:
  folder = tmp_path / "kept"
  for entry in ("erm", "jtt", "identify"):
    (folder / "runs/lff/lff_mlp/rho0.99" / entry).mkdir(parents=True)
    (folder / "runs/lff/lff_mlp/rho0.99" / entry / "results.json").write_text("{}")
  (folder / "config.json").write_text(json.dumps(config))
  (folder / "command.json").write_text('{"command": "old"}')
  return folder


def test_apply_drops_those_runs_and_the_command_and_writes_the_new_config(tmp_path):
  folder = _folder(tmp_path, _config())
  dropped = carry.reconfigure(folder, {"jtt": "why"}, '{"new": 1}')
  assert [p.name for p in dropped] == ["jtt"]
  runs = folder / "runs/lff/lff_mlp/rho0.99"
  assert sorted(p.name for p in runs.iterdir()) == ["erm", "identify"]
  assert not (folder / "command.json").exists()
  assert json.loads((folder / "config.json").read_text()) == {"new": 1}


def test_the_command_line_says_what_it_would_drop_and_changes_nothing(tmp_path):
  folder = _folder(tmp_path, _config())
  before = (folder / "config.json").read_text()
  out = subprocess.run(
      [sys.executable, "tools/reconfigure_kept.py", f"--folders={folder}",
       "--config=configs/zoo.py:full", "--config.zoo.jtt.lam_grid=(20.0,)"],
      cwd=REPO, capture_output=True, text=True, check=True).stdout
  assert "1 runs of 3 entries train again" in out and "jtt: its entry differs" in out
  assert "Nothing changed: rerun with --apply." in out
  assert (folder / "config.json").read_text() == before and (folder / "command.json").exists()


def test_a_refused_folder_leaves_every_folder_as_it_was(tmp_path):
  """The second folder holds another benchmark: the first, though it would accept the config, is
  not changed either."""
  first = _folder(tmp_path / "a", _config())
  other = _config()
  other["num_seeds"] = 3
  second = _folder(tmp_path / "b", other)
  out = subprocess.run(
      [sys.executable, "tools/reconfigure_kept.py", f"--folders={first},{second}", "--apply",
       "--config=configs/zoo.py:full", "--config.zoo.jtt.lam_grid=(20.0,)"],
      cwd=REPO, capture_output=True, text=True)
  assert out.returncode != 0 and "differ outside their zoo entries" in out.stderr
  assert (first / "runs/lff/lff_mlp/rho0.99/jtt").is_dir() and (first / "command.json").exists()
  assert json.loads((first / "config.json").read_text()) == _config()
