"""The benchmark runs at a tiny size and writes well-formed JSON (no speed is asserted)."""

import importlib.util
import inspect
import json
import math
import pathlib
import subprocess
import sys

import pytest

from ccmnist import speed
from ccmnist.train import step as step_lib
from configs import common

REPO = pathlib.Path(__file__).resolve().parents[1]
# One batch size keeps the compiles (most of the time) few; the default names are checked below.
TINY = dict(repeats=1, train_images=1, pgd_steps=1, coloring_n=200, eval_batches=1, k8_steps=1,
            matmul_n=64, batch_sizes=(64,))


@pytest.fixture(scope="module", name="results")
def fixture_results():
  from launch import speed as launch_speed  # pylint: disable=import-outside-toplevel
  # Not the config's default conv impl, so the option is seen to reach the models.
  return speed.run_speed(common.train_config(), conv_impl="lax",
                         mlp_configs=launch_speed.mlp_configs(2), mlp_images=1, **TINY)


def test_results_have_every_key_and_positive_numbers(results):
  assert {"erm_b64", "erm_b256", "gradient_penalty_b64", "consistency_b64"} <= set(
      speed.workload_names())
  assert set(results["train_img_per_s"]) == {"erm_b64", "gradient_penalty_b64", "consistency_b64"}
  for key in results["train_img_per_s"]:
    assert results["train_img_per_s"][key] > 0
    assert results["train_compile_s"][key] > 0
    assert results["train_flops_per_step"][key] > 0 or math.isnan(
        results["train_flops_per_step"][key])
  for key in ("pgd_img_per_s", "eval_img_per_s", "coloring_s_70k", "coloring_first_call_s",
              "peak_flop_per_s", "sweep_over_single_eps", "k8_sequential_over_vmapped"):
    assert results[key] > 0, key
  assert results["device"]["count"] >= 1 and results["device"]["platform"]
  # Consistency runs the counterfactual batch too: more flops per step than ERM.
  assert (results["train_flops_per_step"]["consistency_b64"] >
          results["train_flops_per_step"]["erm_b64"])
  assert results["conv_impl"] == "lax" != common.train_config().model.conv_impl
  json.dumps(results, allow_nan=True)
  assert "coloring 70k digits" in speed.format_table(results)


def test_the_benchmark_mlp_steps_are_timed_as_the_zoo_trains_them(results):
  """The lff protocol's erm and lff steps, 2 replicas each: LfF trains two MLPs (its pair), so
  its step counts about twice ERM's flops; every number is reported and printed."""
  names = {"lff_erm_b256", "lff_lff_b256"}
  assert results["mlp_replicas"] == {name: 2 for name in names}
  for key in ("mlp_img_per_s", "mlp_compile_s", "mlp_achieved_flop_per_s",
              "mlp_fraction_of_peak"):
    assert set(results[key]) == names and min(results[key].values()) > 0, key
  flops = results["mlp_flops_per_step"]
  assert 1.8 < flops["lff_lff_b256"] / flops["lff_erm_b256"] < 2.5
  # 2 replicas x 256 images x (forward + backward of a 2352-100-100-100-10 MLP) ~ 1 GFLOP.
  assert 0.5e9 < flops["lff_erm_b256"] < 2e9
  assert results["mlp_layout"]["lff_erm_b256"] == {"replica_map": "vmap", "passes": 1}
  assert (step_lib.REPLICA_MAP, step_lib.PASS_IMAGES) == (None, None)
  assert "MLP lff_lff_b256 (2 replicas, vmap, 1 pass)" in speed.format_table(results)


def test_workloads_derive_from_the_base_config_and_leave_it_alone():
  base = common.train_config()
  before = base.to_dict()
  c = speed.workload_config(base, "gradient_penalty", 256, num_seeds=8)
  assert (c.loss.name, c.loss.lam, c.train.batch_size, c.num_seeds) == (
      "gradient_penalty", 0.1, 256, 8)
  assert c.optim == base.optim and c.model == base.model
  assert base.to_dict() == before
  with pytest.raises(ValueError, match="conv_impl"):
    speed.run_speed(base, conv_impl="winograd", **TINY)
  assert base.to_dict() == before


def test_library_takes_its_config_as_an_argument():
  code = inspect.getsource(speed).split('"""', 2)[2]  # After the module docstring.
  assert "import configs" not in code and "from configs" not in code


def test_entrypoint_writes_the_json_file_the_tools_read(tmp_path, monkeypatch):
  """launch.speed with the run stubbed out: the JSON file is written, under the name that
  tools/side_by_side.py and tools/accelerator_check.py read, and the table printed."""
  from launch import speed as launch_speed  # pylint: disable=import-outside-toplevel
  fake = {"device": {"description": "1 x cpu:cpu"}, "train_img_per_s": {"erm_b64": 1.0},
          "train_compile_s": {"erm_b64": 1.0}, "train_achieved_flop_per_s": {"erm_b64": 1.0},
          "train_fraction_of_peak": {"erm_b64": 0.1}, "peak_flop_per_s": 1.0,
          "eval_img_per_s": 1.0, "pgd_img_per_s": 1.0, "sweep_over_single_eps": 1.0,
          "coloring_s_70k": 1.0, "coloring_first_call_s": 1.0, "k8_sequential_over_vmapped": 1.0,
          "k8_sequential_s": 1.0,
          "k8_vmapped_s": 1.0}
  calls = []
  monkeypatch.setattr(speed, "run_speed",
                      lambda base_config, **kw: calls.append((base_config, kw)) or fake)
  for flags, want in (([], (None, (None, None))),
                      (["--conv_impl=patches", "--mlp_replica_map=scan", "--mlp_pass_images=64"],
                       ("patches", ("scan", 64)))):
    monkeypatch.setattr(sys, "argv", ["bench", f"--workdir={tmp_path}"] + flags)
    with pytest.raises(SystemExit) as e:
      launch_speed.common.run(launch_speed.main)
    assert e.value.code in (None, 0)
    for name in _tool_file_names():
      assert json.loads((tmp_path / name).read_text()) == fake
    base_config, kw = calls[-1]
    assert (kw["conv_impl"], kw["mlp_layout"]) == want
    assert base_config.model.name == "cheater" and base_config.train.batch_size == 64
    assert set(kw["mlp_configs"]) == {"lff_erm_b256", "lff_lff_b256"}


def _tool_file_names() -> set:
  """The file name each tool reads launch.speed's results from."""
  names = set()
  for tool in ("side_by_side", "accelerator_check"):
    spec = importlib.util.spec_from_file_location(tool, REPO / "tools" / f"{tool}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names.add(module.SPEED_FILE)
  return names


def test_entrypoint_help_runs():
  proc = subprocess.run([sys.executable, "-m", "launch.speed", "--helpshort"], cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=False)
  assert "--workdir" in proc.stdout + proc.stderr
