"""The stage runner on toy stages: `only`, missing inputs, stage times, the workdir lock."""

import json
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from ccmnist import pipeline
from ccmnist.util import workdir as workdir_lib
from launch import common

REPO = pathlib.Path(__file__).resolve().parents[1]


def toy_table(log: list, *, needs_of_c=("a",)) -> dict:
  """Stages a, b, c, d: each appends its name to `log` and writes DIR/<name>.done unless it is
  there; c needs needs_of_c; d makes nothing another stage reads (done None)."""

  def make(name):
    def fn(config, workdir):
      del config
      path = pathlib.Path(workdir) / f"{name}.done"
      if path.exists():
        return False
      log.append(name)
      path.write_text("x")
      return True
    return fn

  def done(name):
    return lambda config, workdir: (pathlib.Path(workdir) / f"{name}.done").exists()

  return {"a": pipeline.Stage(make("a"), done("a")),
          "b": pipeline.Stage(make("b"), done("b")),
          "c": pipeline.Stage(make("c"), done("c"), needs=needs_of_c),
          "d": pipeline.Stage(make("d"), needs=lambda config: config.d_needs)}


def toy_config(only: str = "", d_needs=("b",)) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"only": only, "seed": 0, "d_needs": d_needs})


@pytest.mark.parametrize("only,expected", [
    ("", ("a", "b", "c", "d")),
    ("c,a", ("a", "c")),  # The table's order, not the order written.
    (" d , b ,b", ("b", "d")),  # Spaces and repeats do not matter.
])
def test_only_selects_stages_in_table_order(only, expected):
  assert pipeline.selected_stages(only, toy_table([])) == expected


def test_only_naming_an_unknown_stage_lists_the_stages():
  with pytest.raises(ValueError, match=r"unknown stages \['e'\]; stages: a, b, c, d\.$"):
    pipeline.selected_stages("a,e", toy_table([]))


def test_stages_run_in_table_order_and_a_rerun_skips_what_is_done(tmp_path):
  log = []
  times = pipeline.run_stages(toy_config("d,b,a,c"), tmp_path, toy_table(log), label="toy")
  assert log == ["a", "b", "c", "d"]
  assert set(times) == {"a", "b", "c", "d"}
  on_disk = json.loads((tmp_path / "stages.json").read_text())
  assert on_disk == times == pipeline.read_stage_times(tmp_path)
  assert all(t["seconds"] >= 0 and t["device"] and t["finished"] for t in on_disk.values())
  (tmp_path / "b.done").unlink()
  before = dict(on_disk)
  times = pipeline.run_stages(toy_config(), tmp_path, toy_table(log), label="toy")
  assert log == ["a", "b", "c", "d", "b"]  # Only what was missing ran again.
  assert times["a"] == before["a"] and times["b"] != before["b"]  # A skipped stage keeps its time.
  assert not workdir_lib.holds_workdir(tmp_path)


def test_a_stage_whose_inputs_are_missing_is_refused_before_anything_runs(tmp_path):
  log = []
  with pytest.raises(ValueError) as e:
    pipeline.run_stages(toy_config("b,c"), tmp_path, toy_table(log), label="toy")
  message = str(e.value)
  assert "\n" not in message
  assert message == (f"stage c needs the outputs of stage a, which {tmp_path} does not hold yet; "
                     "run it first (--config.only=a), or together (--config.only=a,b,c), or "
                     "every stage (--config.only='').")
  assert log == [] and not (tmp_path / "stages.json").exists()
  assert not workdir_lib.holds_workdir(tmp_path)
  # Needs from the config: d needs a and b here.
  with pytest.raises(ValueError, match=r"^stage d needs the outputs of stages a, b, .*run them "
                     r"first \(--config\.only=a,b\), or together \(--config\.only=a,b,d\)"):
    pipeline.run_stages(toy_config("d", d_needs=("a", "b")), tmp_path / "other",
                        toy_table(log), label="toy")
  # Selected together, or done before: accepted.
  pipeline.run_stages(toy_config("a,c"), tmp_path, toy_table(log), label="toy")
  pipeline.run_stages(toy_config("c"), tmp_path, toy_table(log), label="toy")
  assert log == ["a", "c"]


@pytest.mark.parametrize("needs", [("d",), ("c",), ("nope",)])
def test_a_table_whose_stage_needs_a_later_or_unchecked_stage_is_refused(tmp_path, needs):
  with pytest.raises(ValueError, match=r"stage c needs \[.*\], which are not earlier stages"):
    pipeline.run_stages(toy_config(), tmp_path, toy_table([], needs_of_c=needs), label="toy")


def test_then_runs_holding_the_workdir_and_the_workdir_is_released_on_error(tmp_path):
  seen = []
  pipeline.run_stages(toy_config("a"), tmp_path, toy_table([]), label="toy",
                      then=lambda w, s: seen.append((workdir_lib.holds_workdir(w), s)))
  assert seen == [(True, ("a",))]

  def boom(config, workdir):
    raise RuntimeError("stage failed")
  table = {"x": pipeline.Stage(boom)}
  with pytest.raises(RuntimeError, match="stage failed"):
    pipeline.run_stages(toy_config(), tmp_path / "w", table, label="toy")
  assert not workdir_lib.holds_workdir(tmp_path / "w")
  assert not (tmp_path / "w" / "stages.json").exists()


def test_only_is_not_part_of_the_config_but_the_rest_is(tmp_path):
  pipeline.run_stages(toy_config("a"), tmp_path, toy_table([]), label="toy")
  pipeline.run_stages(toy_config("b"), tmp_path, toy_table([]), label="toy")
  other = toy_config()
  other.seed = 1
  with pytest.raises(workdir_lib.WorkdirConfigError, match=r"seed: 0 \(workdir\) vs 1 \(now\)"):
    pipeline.run_stages(other, tmp_path, toy_table([]), label="toy")


def test_a_workdir_held_by_another_process_is_refused(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from ccmnist.util import workdir; "
       "workdir.lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
       str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "locked\n"
    log = []
    with pytest.raises(workdir_lib.WorkdirBusyError, match=rf"in use by pid {holder.pid} "):
      pipeline.run_stages(toy_config(), tmp_path, toy_table(log), label="toy")
    assert log == [] and not (tmp_path / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()


def test_the_first_command_is_kept_and_a_different_config_leaves_it(tmp_path):
  pipeline.run_stages(toy_config(only="a"), tmp_path, toy_table([]), label="toy",
                      command="python -m toy --config.x=1 --workdir=DIR")
  assert pipeline.read_command(tmp_path) == "python -m toy --config.x=1 --workdir=DIR"
  pipeline.run_stages(toy_config(only="b"), tmp_path, toy_table([]), label="toy",
                      command="python -m toy --config.x=1 --config.only=b --workdir=DIR")
  assert pipeline.read_command(tmp_path) == "python -m toy --config.x=1 --workdir=DIR"
  with pytest.raises(workdir_lib.WorkdirConfigError):
    pipeline.run_stages(toy_config(d_needs=("a",)), tmp_path, toy_table([]), label="toy",
                        command="python -m toy --other")
  assert pipeline.read_command(tmp_path) == "python -m toy --config.x=1 --workdir=DIR"
  assert pipeline.read_command(tmp_path / "none") is None


def test_the_recorded_command_leaves_out_where_and_how_a_run_goes(monkeypatch):
  monkeypatch.setattr(sys, "argv", [
      "zoo.py", "--config=configs/zoo.py:full", "--workdir", "/tmp/w", "--keep=docs/k",
      "--analyse_as_trained", "--config.num_seeds=5", "--keep", "docs/k2",
      "--config.only=train"])
  assert common.command("launch.zoo") == (
      "python -m launch.zoo --config=configs/zoo.py:full --config.num_seeds=5 --workdir=DIR")
