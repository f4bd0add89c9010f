"""tools/accelerator_check.py: limits, the kill at a limit, the plan, the summary and the output
folder, end to end with a fake interpreter standing in for every part (no jax work, no network)."""

import ast
import gzip
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "accelerator_check.py"


def _load():
  spec = importlib.util.spec_from_file_location("accelerator_check", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


ac = _load()


def _bench(platform="cpu", kind="cpu", ips=1000.0, **extra):
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
  limits = ac.parse_limits(["study=300", "bench=1.5"], ac.LIMITS)
  assert limits["study"] == 300 and limits["bench"] == 1.5
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
  assert ac.LIMITS["benchmark"] > 0 and ac.PARTS[-1] == ac.HEIR == "benchmark"


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


def _fake_repo(root: pathlib.Path, *, conv_flag: bool, benchmark: bool) -> pathlib.Path:
  (root / "launch").mkdir(parents=True)
  flag = '_C = flags.DEFINE_string(\n    "conv_impl", None, "")\n' if conv_flag else ""
  (root / "launch" / "speed.py").write_text("from absl import flags\n" + flag)
  if benchmark:
    (root / "launch" / "zoo.py").write_text("")
  return root


def test_plan_skips_what_does_not_exist_yet(tmp_path):
  repo = _fake_repo(tmp_path / "r", conv_flag=False, benchmark=False)
  parts = {p["name"]: p for p in ac.plan(repo, tmp_path, python="py", smoke=False,
                                          limits=ac.LIMITS)}
  assert list(parts) == list(ac.PARTS)
  assert parts["bench_lax"]["argv"] is None and "no --conv_impl" in parts["bench_lax"]["note"]
  assert parts["benchmark"]["argv"] is None and "does not exist" in parts["benchmark"]["note"]
  assert "--config=configs/study.py:full" in parts["study"]["argv"]
  assert "--quick" not in parts["bench"]["argv"]


def test_plan_benchmark_part_runs_the_full_lff_protocol_for_four_methods(tmp_path):
  repo = _fake_repo(tmp_path / "r", conv_flag=False, benchmark=True)
  limits = ac.parse_limits(["benchmark=123"], ac.LIMITS)
  parts = ac.plan(repo, tmp_path / "s", python="py", smoke=False, limits=limits)
  assert [p["name"] for p in parts][-2:] == ["study", "benchmark"]  # The study keeps its time.
  bench = parts[-1]
  assert bench["argv"] == ["py", "-m", "launch.zoo", "--config=configs/zoo.py:full",
                           "--config.run_protocols=lff",
                           "--config.methods=erm,groupdro,jtt,lff",
                           f"--workdir={tmp_path / 's' / 'benchmark'}"]
  assert bench["limit_s"] == 123 and bench["inherits"] is True
  assert [p["name"] for p in parts if p["inherits"]] == ["benchmark"]
  assert "configs/zoo.py:full" in bench["note"]
  smoke = ac.plan(repo, tmp_path / "s", python="py", smoke=True, limits=ac.SMOKE_LIMITS)[-1]
  assert smoke["argv"][3:6] == ["--config=configs/zoo.py:tiny",
                                "--config.run_protocols=lff",
                                "--config.methods=erm,groupdro,jtt,lff"]
  assert "--config.project_to.protocols.study.models=cheater" in smoke["argv"]
  assert smoke["limit_s"] == ac.SMOKE_LIMITS["benchmark"]


def test_benchmark_overrides_name_fields_and_entries_of_the_real_config():
  """The part's --config.* overrides, applied to configs/zoo.py: a renamed field or
  method would otherwise first fail on the accelerator."""
  from configs import zoo as config_file  # pylint: disable=g-import-not-at-top
  for variant, extra in (("full", ()), ("tiny", ac.BENCHMARK_SMOKE_ARGS)):
    c = config_file.get_config(variant)
    for arg in ac.BENCHMARK_ARGS + extra:
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


def test_plan_runs_lax_and_benchmark_when_present_and_shrinks_for_smoke(tmp_path):
  repo = _fake_repo(tmp_path / "r", conv_flag=True, benchmark=True)
  parts = {p["name"]: p for p in ac.plan(repo, tmp_path, python="py", smoke=True,
                                          limits=ac.SMOKE_LIMITS)}
  assert "--conv_impl=lax" in parts["bench_lax"]["argv"]
  assert parts["benchmark"]["argv"][:4] == ["py", "-m", "launch.zoo",
                                            "--config=configs/zoo.py:tiny"]
  assert "--config=configs/study.py:tiny" in parts["study"]["argv"]
  assert {"--quick", "--repeats=1"} <= set(parts["bench"]["argv"])
  assert parts["bench"]["argv"][-1] != parts["bench_lax"]["argv"][-1]  # Own workdirs.


# A benchmark part's log as absl writes it, killed during its fourth run: hand-made.
BENCHMARK_LOG_KILLED = """\
$ python -m launch.zoo --config=configs/zoo.py:full --workdir=/s/benchmark
I1202 10:00:01.000001 7 run.py:250] [benchmark 1/4] stage train ...
I1202 10:00:01.100000 7 run.py:109] [benchmark train] 20 runs, 0 finished before, 20 to train
I1202 10:00:09.000000 7 loop.py:233] epoch 1/100 step 203/203  loss 2.1000  51234 img/s  ETA 99s
I1202 10:00:10.000000 7 loop.py:263] epoch 1: {'test_easy': [0.5, 0.5]}
I1202 10:00:31.000000 7 run.py:116] [benchmark train 1/20] lff/lff_mlp/rho0.95/erm done in \
30.2s (516238 img/s); 1/20 runs done, 30s so far, ETA 9m 40s
I1202 10:01:40.000000 7 run.py:116] [benchmark train 2/20] lff/lff_mlp/rho0.95/groupdro done \
in 68.9s (678823 img/s); 2/20 runs done, 1m 39s so far, ETA 9m 02s
W1202 10:01:41.000000 7 run.py:85] [benchmark] lff/lff_mlp/rho0.95/identify diverged: step 4
I1202 10:01:42.000000 7 run.py:116] [benchmark train 3/20] lff/lff_mlp/rho0.95/identify failed \
in 1.5s (2078720 img/s); 3/20 runs done, 1m 41s so far, ETA 8m 50s
I1202 10:01:50.000000 7 loop.py:233] epoch 1/100 step 203/203  loss 2.3026  40000 img/s  ETA 120s
I1202 10:01:51.000000 7 loop.py:233] epoch 2/100 step 203/203  loss nan  41000 img/s  ETA 118s

[accelerator_check] killed at its limit of 245 s
"""


def test_parse_benchmark_log_gives_each_finished_run_and_what_was_cut():
  got = ac.parse_benchmark_log(BENCHMARK_LOG_KILLED)
  assert got["runs"] == [
      {"index": 1, "of": 20, "run": "lff/lff_mlp/rho0.95/erm", "status": "done",
       "seconds": 30.2, "img_per_s": 516238.0},
      {"index": 2, "of": 20, "run": "lff/lff_mlp/rho0.95/groupdro", "status": "done",
       "seconds": 68.9, "img_per_s": 678823.0},
      {"index": 3, "of": 20, "run": "lff/lff_mlp/rho0.95/identify", "status": "failed",
       "seconds": 1.5, "img_per_s": 2078720.0}]
  assert (got["planned"], got["finished_before"], got["probes"]) == (20, 0, [])
  assert got["in_progress"] == {"what": "run 4/20", "epoch": 2, "epochs": 100,
                                "img_per_s": 41000.0}


def test_parse_benchmark_log_of_a_completed_run_has_probes_and_nothing_in_progress():
  log = (
      "I1202 10:00:01.1 7 run.py:109] [benchmark train] 2 runs, 1 finished before, 1 to train\n"
      "I1202 10:00:02.0 7 loop.py:233] epoch 3/3 step 12/12  loss 0.5000  900 img/s  ETA 0s\n"
      "I1202 10:00:03.0 7 run.py:116] [benchmark train 2/2] lff/lff_mlp/rho0.95/lff done in "
      "4.0s (1500 img/s); 2/2 runs done, 4s so far, ETA 0s\n"
      "I1202 10:00:04.0 7 loop.py:233] epoch 2/2 step 64/64  loss 1.0000  700 img/s  ETA 0s\n"
      "I1202 10:00:05.0 7 run.py:131] [benchmark train] cost probe study/cheater in 9.5s\n"
      "I1202 10:00:06.0 7 run.py:135] [benchmark train] 1 runs trained in 14s (286 img/s "
      "overall)\n"
      "I1202 10:00:07.0 7 run.py:262] [benchmark 4/4] stage report done in 0.3s\n")
  got = ac.parse_benchmark_log(log)
  assert [(r["run"], r["seconds"], r["img_per_s"]) for r in got["runs"]] == [
      ("lff/lff_mlp/rho0.95/lff", 4.0, 1500.0)]
  assert (got["planned"], got["finished_before"]) == (2, 1)
  assert got["probes"] == [{"probe": "study/cheater", "seconds": 9.5}]
  assert got["in_progress"] is None
  # A probe cut off after every run: not taken for a run.
  cut = ac.parse_benchmark_log(log.split("I1202 10:00:05.0")[0])
  assert cut["in_progress"] == {"what": "a cost probe", "epoch": 2, "epochs": 2,
                                "img_per_s": 700.0}
  assert ac.parse_benchmark_log("no benchmark here\n") == {
      "runs": [], "planned": None, "finished_before": None, "probes": [], "in_progress": None}


def _format_strings(path: pathlib.Path, start: str) -> str:
  """The (implicitly concatenated) string literal of path's source that begins with start."""
  m = re.search(r'"' + re.escape(start) + r'[^"]*"(?:\s*"[^"]*")*', path.read_text())
  assert m, f"{path} logs no line beginning {start!r}: update parse_benchmark_log"
  return ast.literal_eval("(" + m[0] + ")")


def test_parser_reads_the_lines_the_benchmark_and_loop_really_log():
  """The parser against the format strings of ccmnist/ itself, so a changed log line fails
  here and not, silently, on the accelerator."""
  run_py = REPO / "ccmnist" / "zoo" / "stages.py"
  lines = [
      _format_strings(run_py, "[benchmark train] %d runs") % (20, 0, 20),
      _format_strings(REPO / "ccmnist" / "train" / "loop.py", "epoch %d/%d step") % (
          5, 100, 203, 203, 0.25, 812345.4, 61.0),
      _format_strings(run_py, "[benchmark train %d/%d]") % (
          7, 20, "lff/lff_mlp/rho0.98/groupdro", "done", 61.25, 766404.6, 7, 20, "5m 01s",
          "9m 10s"),
      _format_strings(run_py, "[benchmark train %d/%d]") % (
          8, 20, "lff/lff_mlp/rho0.98/identify", "failed", 3.0, 0.0, 8, 20, "5m 04s", "9m"),
      _format_strings(REPO / "ccmnist" / "train" / "loop.py", "epoch %d/%d step") % (
          9, 100, 203, 203, 0.25, 812345.4, 61.0),
      _format_strings(run_py, "[benchmark train] cost probe") % ("study", "mlp", 2.5)]
  got = ac.parse_benchmark_log("\n".join(f"I1202 10:00:00.000000 7 run.py:1] {x}" for x in lines))
  assert [(r["index"], r["run"], r["status"], r["seconds"], r["img_per_s"])
          for r in got["runs"]] == [(7, "lff/lff_mlp/rho0.98/groupdro", "done", 61.2, 766405.0),
                                    (8, "lff/lff_mlp/rho0.98/identify", "failed", 3.0, 0.0)]
  assert got["planned"] == 20 and got["probes"] == [{"probe": "study/mlp", "seconds": 2.5}]
  assert got["in_progress"] is None  # The probe line ended the epochs before it.
  got = ac.parse_benchmark_log("\n".join(lines[:2]))
  assert got["in_progress"] == {"what": "run 1/20", "epoch": 5, "epochs": 100,
                                "img_per_s": 812345.0}


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
  text = ac.summary_markdown(_status("cpu", "cpu"), bench=_bench(), bench_lax=_bench(ips=500.0))
  assert "NOT AN ACCELERATOR RESULT" in text and "NOT A GPU" in text
  no_probe = _status()
  no_probe["probe"] = {}
  assert "NO DEVICE PROBE" in ac.summary_markdown(no_probe)
  # A bench that ran elsewhere than the probe saw is flagged, never merged silently.
  text = ac.summary_markdown(_status("gpu", "NVIDIA H200"), bench=_bench("cpu", "cpu"))
  assert "DEVICE MISMATCH" in text and "NOT AN ACCELERATOR RESULT" not in text
  stages = {"data": {"seconds": 1.0, "device": "cpu"}}
  assert "DEVICE MISMATCH" in ac.summary_markdown(_status("gpu", "NVIDIA H200"), stages=stages)


def test_summary_of_a_gpu_run_has_every_headline():
  bench = _bench("gpu", "NVIDIA H200", ips=1000.0)
  lax = _bench("gpu", "NVIDIA H200", ips=1500.0)
  stages = {"data": {"seconds": 2.0, "device": "NVIDIA H200"},
            "cheater": {"seconds": 8.0, "device": "NVIDIA H200"}}
  status = _status("gpu", "NVIDIA H200")
  study = next(p for p in status["parts"] if p["name"] == "study")
  study["wall_s"] = 95.0
  text = ac.summary_markdown(status, bench=bench, bench_lax=lax, stages=stages)
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
    if p["name"] == "bench_lax":
      p.update(status="skipped", note="skipped: launch.speed has no --conv_impl flag yet")
    if p["name"] == "benchmark":
      p.update(status="skipped", note="skipped: launch/zoo.py does not exist yet")
  text = ac.summary_markdown(status, bench=None, stages={"data": {"seconds": 3.0,
                                                                  "device": "cpu"}})
  assert "**timeout** after 240 s" in text and "| data | 3.0 | cpu |" in text
  assert "no K=8 entry" in text and "no --conv_impl flag yet" in text
  assert "\nskipped: launch/zoo.py does not exist yet\n" in text


def test_summary_of_a_cut_benchmark_has_its_runs_and_where_it_stopped():
  status = _status("gpu", "NVIDIA H200")
  part = next(p for p in status["parts"] if p["name"] == "benchmark")
  part.update(status="timeout", wall_s=245.3, limit_s=100, timeout_s=245.0, inherited_s=145.0,
              note="configs/zoo.py:full, LfF protocol: ERM, GroupDRO, JTT, LfF")
  outcome = {**ac.parse_benchmark_log(BENCHMARK_LOG_KILLED), "stages": None, "completed": False}
  text = ac.summary_markdown(status, benchmark=outcome)
  section = text[text.index("## Debiasing benchmark"):]
  assert ("configs/zoo.py:full, LfF protocol: ERM, GroupDRO, JTT, LfF: **timeout** after "
          "245 s (its limit 100 s plus 145 s the parts before it left unused).") in section
  assert "2 of 20 runs done, 1 failed, 101 s in all." in section
  assert "| run | seconds | img/s |" in section
  assert "| lff/lff_mlp/rho0.95/erm | 30.2 | 516,238 |" in section
  assert "| lff/lff_mlp/rho0.95/identify (failed) | 1.5 | 2,078,720 |" in section
  assert "Stopped during run 4/20, after epoch 2/100 (41,000 img/s so far)." in section
  assert "Completed" not in section and "MISMATCH" not in text
  # Completed on another device than the probe saw: its stages flagged, the report pointed to.
  outcome.update(in_progress=None, completed=True,
                 stages={"train": {"seconds": 200.0, "device": "cpu"}})
  text = ac.summary_markdown(status, benchmark=outcome)
  assert "The benchmark's stages ran on ['cpu']" in text and "| train | 200.0 | cpu |" in text
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
  ips = 2000.0 if "conv_impl" in flags else 1000.0
  (work / "bench.json").write_text(json.dumps({{
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
  log = "I1202 10:00:00.000000 7 run.py:1] "
  print(log + "[benchmark train] 3 runs, 0 finished before, 3 to train", file=sys.stderr)
  for i, run in enumerate(("erm", "groupdro"), 1):
    print(log + f"[benchmark train {{i}}/3] lff/lff_mlp/rho0.95/{{run}} done in {{i}}.5s "
          f"({{i}}000 img/s); {{i}}/3 runs done, 2s so far, ETA 1s", file=sys.stderr)
  sleep = float(os.environ.get("FAKE_BENCHMARK_SLEEP", "0"))
  if sleep:
    print(log + "epoch 7/100 step 203/203  loss 0.1000  4321 img/s  ETA 9s", file=sys.stderr,
          flush=True)
    time.sleep(sleep)
  (work / "stages.json").write_text(json.dumps({{"train": {{"seconds": 4.0, "device": "fake"}}}}))
  (work / "results.json").write_text("{{}}")
  (work / "benchmark.md").write_text("# benchmark\n")
else:
  sys.exit(f"unknown module {{module}}")
'''


@pytest.fixture(name="fake")
def fixture_fake(tmp_path, monkeypatch):
  repo = _fake_repo(tmp_path / "repo", conv_flag=True, benchmark=True)
  (repo / ".whl").mkdir()
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
  assert got == {"install": "ok", "device": "ok", "bench": "ok", "bench_lax": "ok",
                 "study": "timeout", "benchmark": "ok"}
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
  # The benchmark completed: its report here, its runs parsed from its log.
  assert (out / "benchmark.md").read_text() == "# benchmark\n"
  assert status["benchmark"]["completed"] is True
  assert [r["run"] for r in status["benchmark"]["runs"]] == [
      "lff/lff_mlp/rho0.95/erm", "lff/lff_mlp/rho0.95/groupdro"]
  assert "| lff/lff_mlp/rho0.95/groupdro | 2.5 | 2,000 |" in summary
  with tarfile.open(out / "artifacts.tar.gz") as tar:
    names = set(tar.getnames())
  assert {"study/report.md", "study/figures/a.png", "study/runs/cheater/results.json",
          "benchmark/results.json", "benchmark/benchmark.md", "logs/study.log",
          "logs/bench.log", "logs/benchmark.log"} <= names
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
  # A second run without the bench's lax flag must not show the first run's bench_lax.json,
  # nor the stages.json an earlier version of the script wrote.
  (fake["repo"] / "launch" / "speed.py").write_text("")
  (fake["out"] / "stages.json").write_text("{}")
  assert _main(fake) == 0
  assert not (fake["out"] / "bench_lax.json").exists()
  assert not (fake["out"] / "stages.json").exists()
  status = json.loads((fake["out"] / "status.json").read_text())
  assert {p["name"]: p["status"] for p in status["parts"]}["bench_lax"] == "skipped"


def test_end_to_end_a_cut_benchmark_brings_back_its_finished_runs(fake, monkeypatch):
  """Killed at its limit, which the earlier parts' unused time lengthened: the runs it logged
  come back in status.json and the summary, and no benchmark.md pretends it completed."""
  monkeypatch.setenv("FAKE_BENCHMARK_SLEEP", "60")
  others = [f"{n}=1.5" for n in ac.PARTS if n != "benchmark"]
  limits = [a for x in others + ["benchmark=1"] for a in ("--limit", x)]
  t0 = time.monotonic()
  assert _main(fake, *limits) == 1
  assert time.monotonic() - t0 < len(ac.PARTS) + ac.KILL_GRACE_S
  status = json.loads((fake["out"] / "status.json").read_text())
  got = {p["name"]: p for p in status["parts"]}
  assert {n: p["status"] for n, p in got.items()} == {
      "install": "ok", "device": "ok", "bench": "ok", "bench_lax": "ok", "study": "ok",
      "benchmark": "timeout"}
  b = got["benchmark"]
  unused = sum(max(0.0, 1.5 - got[n]["wall_s"]) for n in got if n != "benchmark")
  assert b["limit_s"] == 1 and b["inherited_s"] == pytest.approx(unused)
  assert b["timeout_s"] == pytest.approx(1 + unused) and b["wall_s"] >= b["timeout_s"] > 2
  outcome = status["benchmark"]
  assert [(r["run"], r["seconds"], r["img_per_s"]) for r in outcome["runs"]] == [
      ("lff/lff_mlp/rho0.95/erm", 1.5, 1000.0), ("lff/lff_mlp/rho0.95/groupdro", 2.5, 2000.0)]
  assert outcome["completed"] is False and outcome["stages"] is None
  assert outcome["in_progress"] == {"what": "run 3/3", "epoch": 7, "epochs": 100,
                                    "img_per_s": 4321.0}
  assert not (fake["out"] / "benchmark.md").exists()
  summary = (fake["out"] / "summary.md").read_text()
  assert "| lff/lff_mlp/rho0.95/erm | 1.5 | 1,000 |" in summary
  assert "Stopped during run 3/3, after epoch 7/100" in summary


def test_require_gpu_stops_after_the_device_part_on_cpu(fake):
  assert _main(fake, "--require-gpu") == 2
  status = json.loads((fake["out"] / "status.json").read_text())
  got = {p["name"]: p["status"] for p in status["parts"]}
  assert got["device"] == "ok" and {got[n] for n in ("bench", "study", "benchmark")} == {
      "not_run"}
  assert not (fake["out"] / "bench.json").exists()


def test_total_limit_leaves_later_parts_not_run(fake, monkeypatch):
  monkeypatch.setenv("FAKE_STUDY_SLEEP", "60")
  monkeypatch.setattr(ac, "MIN_PART_S", 1.0)
  assert _main(fake, "--total-limit", "2.5") == 1
  got = {p["name"]: p for p in json.loads((fake["out"] / "status.json").read_text())["parts"]}
  assert got["study"]["status"] == "timeout" and got["study"]["timeout_s"] < 2.5
  assert got["benchmark"]["status"] == "not_run"


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
