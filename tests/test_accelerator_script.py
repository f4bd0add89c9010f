"""tools/accelerator_check.py: limits, the kill at a limit, the plan, the zoo's files read as the
zoo really writes them, the summary and the output folder, end to end with a fake interpreter
standing in for every part (no network)."""

import gzip
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "accelerator_check.py"


def _load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


ac = _load(SCRIPT)
sbs = _load(REPO / "tools" / "side_by_side.py")


def _speed(platform="cpu", kind="cpu", ips=1000.0, **extra):
  return {"device": {"platform": platform, "kind": kind, "count": 1,
                     "description": f"1 x {platform}:{kind}"},
          "jax_version": "0.0.0", "repeats": 3,
          "train_img_per_s": {"erm_b64": ips, "gradient_penalty_b64": ips / 2},
          "train_compile_s": {"erm_b64": 1.5, "gradient_penalty_b64": 3.0},
          "train_achieved_flop_per_s": {"erm_b64": 2e12, "gradient_penalty_b64": float("nan")},
          "train_fraction_of_peak": {"erm_b64": 0.01, "gradient_penalty_b64": float("nan")},
          "peak_flop_per_s": 2e14, "peak_flop_per_s_method": "matmul", "eval_img_per_s": 5e4,
          "pgd_img_per_s": 300.0, "pgd_setting": {"eps": 12.75, "steps": 30, "batch": 200},
          "coloring_s_70k": 0.5, "coloring_source": "mnist", "k8_sequential_over_vmapped": 4.0,
          "k8_sequential_s": 2.0, "k8_vmapped_s": 0.5, "k8_steps": 10, **extra}


def _status(platform="cpu", kind="cpu", **extra):
  parts = [dict(name=n, status="ok", wall_s=1.0, limit_s=10, note="") for n in ac.PARTS]
  return {"started": "now", "smoke": False, "total_limit_s": 480, "wall_s": 6.0,
          "probe": {"platform": platform, "kind": kind, "count": 1, "jax": "0.0.0"},
          "parts": parts, "files": ["summary.md"], **extra}


def test_parse_limits_overrides_and_rejects_bad_values():
  before = dict(ac.LIMITS)
  limits = ac.parse_limits(["study=300", "speed=1.5"], ac.LIMITS)
  assert limits["study"] == 300 and limits["speed"] == 1.5
  assert limits["device"] == ac.LIMITS["device"]
  assert ac.LIMITS == before  # The defaults are not changed in place.
  for bad in ("studdy=3", "study", "study=0", "study=-1", "study=x", "study=inf", "study=nan"):
    with pytest.raises(ac.UsageError, match="--limit"):
      ac.parse_limits([bad], ac.LIMITS)


def test_real_limits_fit_one_device_call():
  # One device command runs at most 10 minutes; the check is sized for 8 of them.
  assert ac.TOTAL_LIMIT <= 480
  # Every part gets its whole limit: none is cut by the total.
  assert sum(ac.LIMITS.values()) <= ac.TOTAL_LIMIT
  assert set(ac.LIMITS) == set(ac.PARTS) == set(ac.SMOKE_LIMITS)
  # The study keeps a margin over its goal, so a miss is measured, not cut off.
  assert ac.LIMITS["study"] >= 1.5 * ac.GOALS["study_s"]
  assert ac.LIMITS["zoo"] > 0 and ac.PARTS[-1] == ac.HEIR == "zoo"


def test_part_timeout_is_cut_to_the_total_and_not_started_near_it():
  assert ac.part_timeout(90, deadline=1000.0, now=0.0) == 90
  assert ac.part_timeout(90, deadline=100.0, now=40.0) == 60
  assert ac.part_timeout(90, deadline=100.0, now=100.0 - ac.MIN_PART_S + 0.1) is None


def test_default_out_dir_prefers_out():
  assert ac.default_out_dir({"OUT": "/x/out"}) == pathlib.Path("/x/out")
  assert ac.default_out_dir({}) == pathlib.Path("accelerator_out")


def test_run_part_kills_the_whole_group_at_its_limit(tmp_path):
  pid_file = tmp_path / "child.pid"
  code = textwrap.dedent(f"""
      import subprocess, sys, time
      child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
      open({str(pid_file)!r}, "w").write(str(child.pid))
      time.sleep(60)
  """)
  t0 = time.monotonic()
  r = ac.run_part([sys.executable, "-c", code], log_path=tmp_path / "log", timeout=1.5)
  assert r["status"] == "timeout" and time.monotonic() - t0 < 1.5 + ac.KILL_GRACE_S
  child = int(pid_file.read_text())
  for _ in range(50):  # The grandchild got the group's SIGTERM too.
    try:
      os.kill(child, 0)
    except ProcessLookupError:
      break
    time.sleep(0.1)
  else:
    pytest.fail(f"grandchild {child} survived the part's timeout")
  assert "killed at its limit" in (tmp_path / "log").read_text()


def test_run_part_ok_and_failed(tmp_path):
  ok = ac.run_part([sys.executable, "-c", "print('hi')"], log_path=tmp_path / "a", timeout=30)
  bad = ac.run_part([sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "b",
                    timeout=30)
  missing = ac.run_part([str(tmp_path / "nope")], log_path=tmp_path / "c", timeout=30)
  assert (ok["status"], ok["rc"]) == ("ok", 0) and "hi" in (tmp_path / "a").read_text()
  assert (bad["status"], bad["rc"]) == ("failed", 3)
  assert missing["status"] == "failed"


def test_plan_zoo_part_runs_the_full_lff_protocol_for_four_methods(tmp_path):
  limits = ac.parse_limits(["zoo=123"], ac.LIMITS)
  parts = ac.plan(tmp_path / "s", python="py", smoke=False, limits=limits)
  assert [p["name"] for p in parts] == list(ac.PARTS)  # The study keeps its time.
  zoo = parts[-1]
  assert zoo["argv"] == ["py", "-m", "launch.zoo", "--config=configs/zoo.py:full",
                         "--config.run_protocols=lff", "--config.methods=erm,groupdro,jtt,lff",
                         f"--workdir={tmp_path / 's' / 'zoo'}"]
  assert zoo["limit_s"] == 123 and zoo["inherits"] is True
  assert [p["name"] for p in parts if p["inherits"]] == ["zoo"]
  assert "configs/zoo.py:full" in zoo["note"]
  by_name = {p["name"]: p for p in parts}
  assert "--config=configs/study.py:full" in by_name["study"]["argv"]
  assert "--quick" not in by_name["speed"]["argv"]
  assert by_name["speed_lax"]["argv"][-1] == "--conv_impl=lax"
  smoke = ac.plan(tmp_path / "s", python="py", smoke=True, limits=ac.SMOKE_LIMITS)[-1]
  assert smoke["argv"][3:6] == ["--config=configs/zoo.py:tiny", "--config.run_protocols=lff",
                                "--config.methods=erm,groupdro,jtt,lff"]
  assert "--config.project_to.protocols.study.models=cheater" in smoke["argv"]
  assert smoke["limit_s"] == ac.SMOKE_LIMITS["zoo"]


def test_zoo_overrides_name_fields_and_entries_of_the_real_config():
  """The part's --config.* overrides, applied to configs/zoo.py: a renamed field or
  method would otherwise first fail on the accelerator."""
  from configs import zoo as config_file  # pylint: disable=g-import-not-at-top
  for profile, extra in (("full", ()), ("tiny", ac.ZOO_SMOKE_ARGS)):
    c = config_file.get_config(profile)
    for arg in ac.ZOO_ARGS + extra:
      path, _, value = arg[len("--config."):].partition("=")
      *parents, leaf = path.split(".")
      node = c
      for name in parents:
        node = node[name]
      assert leaf in node and isinstance(node[leaf], str), arg
      with c.unlocked():
        node[leaf] = value
    assert c.run_protocols == "lff" and "lff" in c.protocols
    assert all(m in c.zoo for m in c.methods.split(","))
  assert c.project_to.protocols.study.models == "cheater"


def test_plan_shrinks_for_smoke(tmp_path):
  parts = {p["name"]: p for p in ac.plan(tmp_path, python="py", smoke=True,
                                          limits=ac.SMOKE_LIMITS)}
  assert "--conv_impl=lax" in parts["speed_lax"]["argv"]
  assert parts["zoo"]["argv"][:4] == ["py", "-m", "launch.zoo", "--config=configs/zoo.py:tiny"]
  assert "--config=configs/study.py:tiny" in parts["study"]["argv"]
  assert {"--quick", "--repeats=1"} <= set(parts["speed"]["argv"])
  assert parts["speed"]["argv"][-1] != parts["speed_lax"]["argv"][-2]  # Own workdirs.


def _tiny_zoo_config(methods: str):
  """configs/zoo.py:tiny's LfF protocol, its train stage alone, for `methods`."""
  from configs import zoo as config_file  # pylint: disable=g-import-not-at-top
  c = config_file.get_config("tiny")
  with c.unlocked():
    c.methods, c.run_protocols, c.only = methods, "lff", "train"
    c.project_to.protocols.study.models = "mlp"  # One cheap cost probe.
  return c


@pytest.fixture(name="tiny_zoo", scope="module")
def fixture_tiny_zoo(tmp_path_factory):
  """A real zoo's train stage: one run and one cost probe, as the library writes them."""
  from ccmnist.zoo import stages  # pylint: disable=g-import-not-at-top
  c = _tiny_zoo_config("erm")
  work = tmp_path_factory.mktemp("zoo")
  return c, work, stages.run_zoo(c, work)


def test_zoo_outcome_reads_what_a_real_zoo_writes(tiny_zoo, tmp_path):
  """The file names are the library's, and each number is the one the library reads back: the
  wall time the report prices with, the steady rate of ccmnist/zoo/cost.py."""
  import jax  # pylint: disable=g-import-not-at-top
  from ccmnist.train import runs as runs_lib  # pylint: disable=g-import-not-at-top
  from ccmnist.zoo import cost, plan, report  # pylint: disable=g-import-not-at-top
  c, work, times = tiny_zoo
  assert (ac.ZOO_PLAN, ac.ZOO_TIME, ac.ZOO_FAILED) == (
      cost.PLAN_FILE, cost.TIME_FILE, report.FAILED_FILE)
  got = ac.zoo_outcome(work)
  runs = plan.all_runs(c)
  assert got["planned"] == len(runs) == 1
  assert [r["key"] for r in got["runs"]] == [r.key for r in runs]
  rdir = plan.run_dir(work, runs[0])
  epochs = runs_lib.load_config(rdir).train.epochs
  r = got["runs"][0]
  assert r["status"] == "done" and "error" not in r
  assert r["seconds"] == json.loads((rdir / cost.TIME_FILE).read_text())["wall_s"] > 0
  assert (r["epoch"], r["epochs"]) == (epochs, epochs) and epochs >= 2
  assert r["examples_per_s"] == pytest.approx(cost.steady_rate(rdir)[0])
  assert r["device"] == jax.devices()[0].device_kind
  probes = plan.probes(c)
  assert probes and [p["key"] for p in got["probes"]] == [f"{p}/{m}" for p, m in probes]
  assert all(p["status"] == "done" and p["seconds"] > 0 and p["epoch"] == p["epochs"]
             for p in got["probes"])
  assert got["in_progress"] is None and got["completed"] is False
  assert got["stages"] == json.loads((work / "stages.json").read_text())
  assert got["stages"]["train"]["seconds"] == times["train"]["seconds"]
  # side_by_side reads the same metrics.jsonl: one rate per epoch.
  assert len(sbs.jax_epoch_rates((rdir / "metrics.jsonl").read_text())) == epochs
  # The same zoo stopped during its run's second epoch, its metrics.jsonl cut mid-line.
  cut = tmp_path / "cut"
  shutil.copytree(work, cut)
  cdir = plan.run_dir(cut, runs[0])
  (cdir / cost.TIME_FILE).unlink()
  first = (cdir / "metrics.jsonl").read_text().splitlines()[0]
  (cdir / "metrics.jsonl").write_text(first + "\n" + first[:20])
  got = ac.zoo_outcome(cut)
  assert got["runs"] == [] and got["planned"] == 1
  assert got["in_progress"] == {"what": f"run 1/1 {runs[0].key}", "epoch": 1, "epochs": epochs,
                                "examples_per_s": json.loads(first)["train_img_per_s"],
                                "last_examples_per_s": json.loads(first)["train_img_per_s"]}
  assert ac.zoo_outcome(tmp_path / "absent") is None


def test_zoo_outcome_reads_real_diverged_runs(tmp_path, monkeypatch):
  """Runs whose loss diverged (and a run that needs one of them): failed, with the error the
  zoo recorded, and no wall time."""
  from ccmnist.train import loop  # pylint: disable=g-import-not-at-top
  from ccmnist.zoo import stages  # pylint: disable=g-import-not-at-top
  c = _tiny_zoo_config("erm,jtt")
  with c.unlocked():
    c.project_to = type(c.project_to)()

  def diverge(config, workdir):
    raise loop.NonFiniteLossError("Loss became nan at step 3 (replica 0); lower the rate.")
  monkeypatch.setattr(loop, "train_and_evaluate", diverge)
  stages.run_zoo(c, tmp_path)
  got = ac.zoo_outcome(tmp_path)
  assert got["planned"] == 3 and got["probes"] == [] and got["in_progress"] is None
  assert [(r["key"].rsplit("/", 1)[1], r["status"], r["seconds"]) for r in got["runs"]] == [
      ("erm", "failed", None), ("identify", "failed", None), ("jtt", "failed", None)]
  assert "Loss became nan" in got["runs"][0]["error"]
  assert "identify" in got["runs"][2]["error"]


def _zoo_run(run_dir: pathlib.Path, *, rates, wall=None, error=None, epochs=100):
  """A zoo run's files, in the format test_zoo_outcome_reads_what_a_real_zoo_writes checks."""
  run_dir.mkdir(parents=True)
  (run_dir / "config.json").write_text(json.dumps({"train": {"epochs": epochs}}))
  (run_dir / "metrics.jsonl").write_text("".join(
      json.dumps({"epoch": e, "train_img_per_s": r, "epoch_time_s": 1.0}) + "\n"
      for e, r in enumerate(rates, 1)))
  if wall is not None:
    (run_dir / ac.ZOO_TIME).write_text(json.dumps({"wall_s": wall, "device": "NVIDIA H200"}))
  if error is not None:
    (run_dir / ac.ZOO_FAILED).write_text(json.dumps({"error": error}))


def _cut_zoo(work: pathlib.Path) -> pathlib.Path:
  """A full zoo stopped during its fourth run of 20: two done, one diverged."""
  keys = [f"lff/lff_mlp/rho{rho}/{m}" for rho in (0.95, 0.98, 0.99, 0.995)
          for m in ("erm", "groupdro", "identify", "jtt", "lff")]
  work.mkdir()
  (work / ac.ZOO_PLAN).write_text(json.dumps({"runs": keys, "probes": ["study/cheater"]}))
  _zoo_run(work / "runs" / keys[0], rates=[100.0, 516000.0, 516238.0, 517000.0], wall=30.2)
  _zoo_run(work / "runs" / keys[1], rates=[100.0, 678823.0], wall=68.9)
  _zoo_run(work / "runs" / keys[2], rates=[], error="Loss became nan at step 4")
  _zoo_run(work / "runs" / keys[3], rates=[40000.0, 41000.0])
  return work


def test_part_env_imports_site_then_repo_and_reads_carried_mnist(tmp_path):
  repo = tmp_path / "repo"
  (repo / ".mnist").mkdir(parents=True)
  env = ac.part_env(repo, tmp_path / "s", site=tmp_path / "site", environ={"PYTHONPATH": "/x"})
  assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "site"), str(repo), "/x"]
  assert env["CCMNIST_DATA_DIR"] == str(repo / ".mnist")
  assert env["CCMNIST_CACHE"] == str(tmp_path / "s" / "cache")
  env = ac.part_env(repo, tmp_path / "s", keep_cache=True,
                    environ={"CCMNIST_DATA_DIR": "/mine", "CCMNIST_CACHE": "/c"})
  assert (env["CCMNIST_DATA_DIR"], env["CCMNIST_CACHE"]) == ("/mine", "/c")
  assert env["PYTHONPATH"] == str(repo)


def test_summary_refuses_to_claim_a_gpu_result_on_cpu():
  text = ac.summary_markdown(_status("cpu", "cpu"), speed=_speed(), speed_lax=_speed(ips=500.0))
  assert "NOT AN ACCELERATOR RESULT" in text and "NOT A GPU" in text
  no_probe = _status()
  no_probe["probe"] = {}
  assert "NO DEVICE PROBE" in ac.summary_markdown(no_probe)
  # A speed run made elsewhere than the probe saw is flagged, never merged silently.
  text = ac.summary_markdown(_status("gpu", "NVIDIA H200"), speed=_speed("cpu", "cpu"))
  assert "DEVICE MISMATCH" in text and "NOT AN ACCELERATOR RESULT" not in text
  stages = {"data": {"seconds": 1.0, "device": "cpu"}}
  assert "DEVICE MISMATCH" in ac.summary_markdown(_status("gpu", "NVIDIA H200"), stages=stages)


def test_summary_of_a_gpu_run_has_every_headline():
  speed = _speed("gpu", "NVIDIA H200", ips=1000.0)
  lax = _speed("gpu", "NVIDIA H200", ips=1500.0)
  stages = {"data": {"seconds": 2.0, "device": "NVIDIA H200"},
            "cheater": {"seconds": 8.0, "device": "NVIDIA H200"}}
  status = _status("gpu", "NVIDIA H200")
  study = next(p for p in status["parts"] if p["name"] == "study")
  study["wall_s"] = 95.0
  text = ac.summary_markdown(status, speed=speed, speed_lax=lax, stages=stages)
  assert "NOT AN ACCELERATOR" not in text and "MISMATCH" not in text
  assert "| train erm_b64 | 1,000 | 1,500 | 1.50x |" in text
  assert "Faster here on training: **lax**" in text
  assert "**4.00x**" in text and "goal at least 3x: goal met" in text
  assert "Wall time **95 s**" in text and "goal under 120 s: goal met" in text
  assert "| sum of stages | 10.0 | |" in text
  assert "Datasheet (H200, dense)" in text and "2.00 TFLOP/s" in text
  assert "| train gradient_penalty_b64 | 500 | 3.0 | n/a | n/a |" in text  # NaN flops.


def test_summary_reports_a_timed_out_study_and_missing_outputs():
  status = _status()
  for p in status["parts"]:
    if p["name"] == "study":
      p.update(status="timeout", wall_s=240.0, note="configs/study.py:full")
    if p["name"] == "speed_lax":
      p.update(status="failed", rc=2, note="conv formulation lax")
    if p["name"] == "zoo":
      p.update(status="not_run", note="not run: the total limit of 480 s was reached")
  text = ac.summary_markdown(status, speed=None, stages={"data": {"seconds": 3.0,
                                                                  "device": "cpu"}})
  assert "**timeout** after 240 s" in text and "| data | 3.0 | cpu |" in text
  assert "no K=8 entry" in text and "no default speed.json." in text
  assert "| speed_lax | **failed** (rc 2) |" in text
  assert "\nnot run: the total limit of 480 s was reached\n" in text


def test_summary_of_a_cut_zoo_has_its_runs_and_where_it_stopped(tmp_path):
  status = _status("gpu", "NVIDIA H200")
  part = next(p for p in status["parts"] if p["name"] == "zoo")
  part.update(status="timeout", wall_s=245.3, limit_s=100, timeout_s=245.0, inherited_s=145.0,
              note="configs/zoo.py:full, LfF protocol: ERM, GroupDRO, JTT, LfF")
  outcome = ac.zoo_outcome(_cut_zoo(tmp_path / "zoo"))
  text = ac.summary_markdown(status, zoo=outcome)
  section = text[text.index("## The zoo"):]
  assert ("configs/zoo.py:full, LfF protocol: ERM, GroupDRO, JTT, LfF: **timeout** after "
          "245 s (its limit 100 s plus 145 s the parts before it left unused).") in section
  assert "2 of 20 runs done, 1 failed, 99 s in all." in section
  assert "| run | seconds | epochs | examples/s |" in section
  # The median of the epochs after the first.
  assert "| lff/lff_mlp/rho0.95/erm | 30.2 | 4/100 | 516,238 |" in section
  assert "| lff/lff_mlp/rho0.95/groupdro | 68.9 | 2/100 | 678,823 |" in section
  assert "| lff/lff_mlp/rho0.95/identify (failed) | n/a | 0/100 | n/a |" in section
  assert ("Stopped during run 4/20 lff/lff_mlp/rho0.95/jtt, after epoch 2/100 (41,000 "
          "examples/s in its last epoch).") in section
  assert "cost probe" not in section and "Completed" not in section and "MISMATCH" not in text
  # Completed on another device than the probe saw: its stages flagged, the report pointed to.
  outcome.update(in_progress=None, completed=True,
                 stages={"train": {"seconds": 200.0, "device": "cpu"}})
  text = ac.summary_markdown(status, zoo=outcome)
  assert "The zoo's stages ran on ['cpu']" in text and "| train | 200.0 | cpu |" in text
  assert "Completed: benchmark.md here" in text and "Stopped during" not in text


FAKE_PYTHON = r'''#!{python}
"""Stands in for python in every part: answers -c PROBE, -m pip/launch.* from the argv."""
import json, os, pathlib, sys, time
args = sys.argv[1:]
flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
if args[0] == "-c":
  print("PROBE " + json.dumps({{"platform": os.environ["FAKE_PLATFORM"], "kind": "fake",
                               "count": 1, "jax": "0.0", "mnist": "ok",
                               "pythonpath": os.environ["PYTHONPATH"]}}))
  sys.exit(0)
module = args[1]
if module == "pip":
  target = pathlib.Path(args[args.index("--target") + 1])
  target.mkdir(parents=True, exist_ok=True)
  (target / "installed").write_text(" ".join(args))
  sys.exit(0)
work = pathlib.Path(flags["workdir"])
work.mkdir(parents=True, exist_ok=True)
if module == "launch.speed":
  if "conv_impl" in flags and os.environ.get("FAKE_LAX_FAILS"):
    sys.exit("no such conv formulation")
  ips = 2000.0 if "conv_impl" in flags else 1000.0
  (work / "speed.json").write_text(json.dumps({{
      "device": {{"platform": os.environ["FAKE_PLATFORM"], "kind": "fake"}},
      "train_img_per_s": {{"erm_b64": ips}}, "pgd_img_per_s": 10.0,
      "k8_sequential_over_vmapped": 3.5, "k8_sequential_s": 3.5, "k8_vmapped_s": 1.0}}))
elif module == "launch.study":
  (work / "stages.json").write_text(json.dumps({{"data": {{"seconds": 0.5, "device": "fake"}}}}))
  (work / "report.md").write_text("# report\n")
  (work / "figures").mkdir()
  (work / "figures" / "a.png").write_bytes(b"png")
  (work / "runs" / "cheater" / "checkpoints").mkdir(parents=True)
  (work / "runs" / "cheater" / "checkpoints" / "big").write_bytes(b"x" * 1000)
  (work / "runs" / "cheater" / "predictions.npz").write_bytes(b"x")
  (work / "runs" / "cheater" / "results.json").write_text("{{}}")
  print("study running", flush=True)
  time.sleep(float(os.environ.get("FAKE_STUDY_SLEEP", "0")))
elif module == "launch.zoo":
  (work / "compilation_cache").mkdir()
  (work / "compilation_cache" / "jit_step").write_bytes(b"x" * 1000)
  # The zoo's files as test_zoo_outcome_reads_what_a_real_zoo_writes checks them.
  runs = [f"lff/lff_mlp/rho0.95/{{m}}" for m in ("erm", "groupdro", "lff")]
  (work / "train_plan.json").write_text(json.dumps({{"runs": runs, "probes": []}}))
  def run(key, rates, wall=None):
    d = work / "runs" / key
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({{"train": {{"epochs": 100}}}}))
    (d / "metrics.jsonl").write_text("".join(
        json.dumps({{"epoch": e, "train_img_per_s": r}}) + "\n" for e, r in enumerate(rates, 1)))
    if wall is not None:
      (d / "benchmark_time.json").write_text(json.dumps({{"wall_s": wall, "device": "fake"}}))
  run(runs[0], [10.0, 1000.0], wall=1.5)
  run(runs[1], [10.0, 2000.0], wall=2.5)
  sleep = float(os.environ.get("FAKE_ZOO_SLEEP", "0"))
  if sleep:
    run(runs[2], [4321.0] * 7)
    time.sleep(sleep)
  (work / "stages.json").write_text(json.dumps({{"train": {{"seconds": 4.0, "device": "fake"}}}}))
  (work / "results.json").write_text("{{}}")
  (work / "benchmark.md").write_text("# benchmark\n")
else:
  sys.exit(f"unknown module {{module}}")
'''


@pytest.fixture(name="fake")
def fixture_fake(tmp_path, monkeypatch):
  repo = tmp_path / "repo"
  (repo / ".whl").mkdir(parents=True)
  (repo / ".whl" / "ml_collections-1.1.0-py3-none-any.whl").write_bytes(b"")
  (repo / ".mnist").mkdir()
  python = tmp_path / "fakepython"
  python.write_text(FAKE_PYTHON.format(python=sys.executable))
  python.chmod(0o755)
  monkeypatch.setattr(ac, "REPO", repo)
  monkeypatch.setenv("FAKE_PLATFORM", "cpu")
  monkeypatch.delenv("CCMNIST_DATA_DIR", raising=False)
  return dict(repo=repo, python=str(python), out=tmp_path / "out", scratch=tmp_path / "scratch",
              site=tmp_path / "site")


def _main(fake, *extra):
  return ac.main([str(fake["out"]), "--python", fake["python"], "--scratch",
                  str(fake["scratch"]), "--site", str(fake["site"]), *extra])


def test_end_to_end_a_timed_out_part_is_reported_and_the_rest_still_runs(fake, monkeypatch,
                                                                         capsys):
  monkeypatch.setenv("FAKE_STUDY_SLEEP", "60")
  t0 = time.monotonic()
  rc = _main(fake, "--limit", "study=1.5")
  assert time.monotonic() - t0 < 1.5 + ac.KILL_GRACE_S
  assert rc == 1  # A part timed out.
  out = fake["out"]
  files = sorted(p.name for p in out.iterdir())
  # What a device run brings back: at most 8 flat files with plain names.
  assert len(files) <= ac.MAX_OUT_FILES and set(files) <= set(ac.OUT_FILES)
  assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) and (out / f).is_file() for f in files)
  assert set(files) == set(ac.OUT_FILES)
  status = json.loads((out / "status.json").read_text())
  got = {p["name"]: p["status"] for p in status["parts"]}
  assert got == {"install": "ok", "device": "ok", "speed": "ok", "speed_lax": "ok",
                 "study": "timeout", "zoo": "ok"}
  assert status["accelerator"] is False
  # The parts import the installed wheels first, then the checkout; MNIST from .mnist/.
  assert status["probe"]["pythonpath"].split(os.pathsep)[:2] == [
      str(fake["site"].resolve()), str(fake["repo"])]
  assert status["data_dir"] == str(fake["repo"] / ".mnist")
  assert (fake["site"] / "installed").is_file()
  summary = (out / "summary.md").read_text()
  assert "NOT AN ACCELERATOR RESULT" in summary and "**timeout** after" in summary
  assert "| train erm_b64 | 1,000 | 2,000 | 2.00x |" in summary
  assert status["study_stages"]["data"]["seconds"] == 0.5
  assert "| data | 0.5 | fake |" in summary
  # The zoo completed: its report here, its runs read from its workdir.
  assert (out / "benchmark.md").read_text() == "# benchmark\n"
  assert status["zoo"]["completed"] is True and status["zoo"]["planned"] == 3
  assert [r["key"] for r in status["zoo"]["runs"]] == [
      "lff/lff_mlp/rho0.95/erm", "lff/lff_mlp/rho0.95/groupdro"]
  assert "| lff/lff_mlp/rho0.95/groupdro | 2.5 | 2/100 | 2,000 |" in summary
  with tarfile.open(out / "artifacts.tar.gz") as tar:
    names = set(tar.getnames())
  assert {"study/report.md", "study/figures/a.png", "study/runs/cheater/results.json",
          "zoo/results.json", "zoo/benchmark.md", "zoo/train_plan.json",
          "zoo/runs/lff/lff_mlp/rho0.95/erm/metrics.jsonl", "logs/study.log", "logs/speed.log",
          "logs/zoo.log"} <= names
  assert not [n for n in names if "checkpoints" in n or "compilation_cache" in n
              or n.endswith(".npz")]
  assert "===== study: timeout" in (out / "logs.txt").read_text()
  assert "NOT AN ACCELERATOR RESULT" in capsys.readouterr().out  # The tail a device run shows.


def test_end_to_end_gpu_run_ok_and_a_rerun_replaces_everything(fake, monkeypatch):
  monkeypatch.setenv("FAKE_PLATFORM", "gpu")
  assert _main(fake, "--limit", "study=1.5") == 0  # FAKE_STUDY_SLEEP unset: finishes.
  status = json.loads((fake["out"] / "status.json").read_text())
  assert status["accelerator"] is True
  assert all(p["status"] == "ok" for p in status["parts"])
  assert "NOT AN ACCELERATOR" not in (fake["out"] / "summary.md").read_text()
  # A second run whose lax part fails must not show the first run's speed_lax.json, nor the
  # files an earlier version of the script wrote.
  monkeypatch.setenv("FAKE_LAX_FAILS", "1")
  for name in ac.OLD_OUT_FILES:
    (fake["out"] / name).write_text("{}")
  assert _main(fake) == 1
  assert not (fake["out"] / "speed_lax.json").exists()
  assert not [n for n in ac.OLD_OUT_FILES if (fake["out"] / n).exists()]
  status = json.loads((fake["out"] / "status.json").read_text())
  assert {p["name"]: p["status"] for p in status["parts"]}["speed_lax"] == "failed"


def test_end_to_end_a_cut_zoo_brings_back_its_finished_runs(fake, monkeypatch):
  """Killed at its limit, which the earlier parts' unused time lengthened: the runs it finished
  come back in status.json and the summary, and no benchmark.md pretends it completed."""
  monkeypatch.setenv("FAKE_ZOO_SLEEP", "60")
  others = [f"{n}=1.5" for n in ac.PARTS if n != "zoo"]
  limits = [a for x in others + ["zoo=1"] for a in ("--limit", x)]
  t0 = time.monotonic()
  assert _main(fake, *limits) == 1
  assert time.monotonic() - t0 < len(ac.PARTS) + ac.KILL_GRACE_S
  status = json.loads((fake["out"] / "status.json").read_text())
  got = {p["name"]: p for p in status["parts"]}
  assert {n: p["status"] for n, p in got.items()} == {
      "install": "ok", "device": "ok", "speed": "ok", "speed_lax": "ok", "study": "ok",
      "zoo": "timeout"}
  z = got["zoo"]
  unused = sum(max(0.0, 1.5 - got[n]["wall_s"]) for n in got if n != "zoo")
  assert z["limit_s"] == 1 and z["inherited_s"] == pytest.approx(unused)
  assert z["timeout_s"] == pytest.approx(1 + unused) and z["wall_s"] >= z["timeout_s"] > 2
  outcome = status["zoo"]
  assert [(r["key"], r["seconds"], r["examples_per_s"]) for r in outcome["runs"]] == [
      ("lff/lff_mlp/rho0.95/erm", 1.5, 1000.0), ("lff/lff_mlp/rho0.95/groupdro", 2.5, 2000.0)]
  assert outcome["completed"] is False and outcome["stages"] is None
  assert outcome["in_progress"] == {"what": "run 3/3 lff/lff_mlp/rho0.95/lff", "epoch": 7,
                                    "epochs": 100, "examples_per_s": 4321.0,
                                    "last_examples_per_s": 4321.0}
  assert not (fake["out"] / "benchmark.md").exists()
  summary = (fake["out"] / "summary.md").read_text()
  assert "| lff/lff_mlp/rho0.95/erm | 1.5 | 2/100 | 1,000 |" in summary
  assert "Stopped during run 3/3 lff/lff_mlp/rho0.95/lff, after epoch 7/100" in summary


def test_require_gpu_stops_after_the_device_part_on_cpu(fake):
  assert _main(fake, "--require-gpu") == 2
  status = json.loads((fake["out"] / "status.json").read_text())
  got = {p["name"]: p["status"] for p in status["parts"]}
  assert got["device"] == "ok" and {got[n] for n in ("speed", "study", "zoo")} == {"not_run"}
  assert not (fake["out"] / "speed.json").exists()


def test_total_limit_leaves_later_parts_not_run(fake, monkeypatch):
  monkeypatch.setenv("FAKE_STUDY_SLEEP", "60")
  monkeypatch.setattr(ac, "MIN_PART_S", 1.0)
  assert _main(fake, "--total-limit", "2.5") == 1
  got = {p["name"]: p for p in json.loads((fake["out"] / "status.json").read_text())["parts"]}
  assert got["study"]["status"] == "timeout" and got["study"]["timeout_s"] < 2.5
  assert got["zoo"]["status"] == "not_run"


def test_usage_errors_exit_64(fake, capsys):
  assert _main(fake, "--limit", "nope=3") == 64
  assert _main(fake, "--total-limit", "0") == 64
  assert "--limit" in capsys.readouterr().err


def test_probe_on_this_machine_says_cpu_and_reads_mnist_from_the_data_dir_alone(tmp_path):
  """The real probe: jax's CPU is not taken for a GPU; an empty data dir is not papered over by
  the cache (the probe gives the loader an empty one)."""
  env = dict(os.environ, PYTHONPATH=str(REPO), CCMNIST_DATA_DIR=str(tmp_path),
             JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", ac.PROBE], env=env, capture_output=True,
                       text=True, timeout=120, check=False)
  probe = ac.parse_probe(res.stdout)
  assert probe["platform"] == "cpu" and not ac.is_gpu(probe), res.stderr[-2000:]
  assert probe["mnist"].startswith("failed") and "lacks train-images-idx3-ubyte" in probe["mnist"]


def test_copy_mnist_gz_checks_every_file(tmp_path):
  cache = tmp_path / "cache"
  cache.mkdir()
  blobs = {name: name.encode() * 3 for name in ac.MNIST_FILES}
  for i, (name, data) in enumerate(blobs.items()):  # Raw and .gz sources both taken.
    if i % 2:
      (cache / f"{name}.gz").write_bytes(gzip.compress(data))
    else:
      (cache / name).write_bytes(data)
  sha = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
  written = ac.copy_mnist_gz(cache, tmp_path / "dest", sha)
  assert written == [f"{n}.gz" for n in ac.MNIST_FILES]
  for name, data in blobs.items():
    assert gzip.decompress((tmp_path / "dest" / f"{name}.gz").read_bytes()) == data
  with pytest.raises(ValueError, match="SHA-256"):
    ac.copy_mnist_gz(cache, tmp_path / "d2", {**sha, ac.MNIST_FILES[0]: "0" * 64})
  (cache / ac.MNIST_FILES[0]).unlink()
  with pytest.raises(FileNotFoundError):
    ac.copy_mnist_gz(cache, tmp_path / "d3", sha)


def test_wheel_requirements_skip_extras(tmp_path):
  wheel = tmp_path / "ml_collections-1.1.0-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as z:
    z.writestr("ml_collections-1.1.0.dist-info/METADATA",
               "Name: ml_collections\nRequires-Dist: absl-py\nRequires-Dist: PyYAML>=5\n"
               "Requires-Dist: pytest ; extra == \"dev\"\n")
  assert ac.wheel_requirements(wheel) == ["absl-py", "PyYAML"]
  assert ac.wheel_project(wheel) == "ml-collections"
  # What ml_collections needs beyond itself is on the accelerator already.
  assert {"absl-py", "pyyaml"} <= ac.ACCELERATOR_HAS


def test_carried_folders_are_ignored_and_the_wrapper_runs():
  lines = (REPO / ".gitignore").read_text().splitlines()
  assert "/.whl/" in lines and "/.mnist/" in lines
  res = subprocess.run([str(REPO / "tools" / "accelerator_check.sh"), "--help"],
                       env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                       text=True, timeout=60, check=False)
  assert res.returncode == 0 and "--cpu-smoke" in res.stdout
