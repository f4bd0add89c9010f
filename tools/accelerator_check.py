"""The accelerator check: the speed benchmark, the full study and the zoo, one output folder.

  tools/accelerator_check.sh --prepare           # here, with a network: fills .whl/ and .mnist/
  tools/accelerator_check.sh [OUT_DIR]           # on the accelerator (OUT_DIR: $OUT, else
                                                   # ./accelerator_out)
  tools/accelerator_check.sh --cpu-smoke DIR     # every part at a small size (tests the script)
  tools/accelerator_check.sh --limit study=300 --total-limit 540 DIR

Parts, in order, each under its own time limit and all under one total limit (a part that times
out or fails is reported as such and the rest still run):
  install    wheels carried in .whl/ installed into --site (the accelerator may lack some of the
             project's requirements and reach no network), skipped when .whl/ holds none;
  device     what jax.devices() is, the versions, and that MNIST loads from $CCMNIST_DATA_DIR
             (default: the carried .mnist/) alone; a CPU is reported loudly and the run goes on;
  speed      python -m launch.speed (default conv formulation; its K=8 vmapped-vs-sequential
             entry included);
  speed_lax  the same with --conv_impl=lax;
  study      python -m launch.study --config=configs/study.py:full (3 seeds);
  zoo        python -m launch.zoo --config=configs/zoo.py:full on the LfF protocol for ERM,
             GroupDRO, JTT and LfF (ZOO_ARGS; --cpu-smoke: the tiny profile). Last, it also gets
             the time the parts before it left unused of their limits (never past the total): it
             does not finish in one call, and every second buys runs.

Results are read from the JSON files the parts write, never from their logs: speed.json, the
study's and the zoo's stages.json, and of the zoo's workdir its train_plan.json and each run's
benchmark_time.json, failed.json, metrics.jsonl and config.json (zoo_outcome), so a zoo cut at
its limit still gives a table of its finished runs (run, seconds, epochs, examples/s).

The output folder holds at most 8 flat files, so that a device run's $OUT comes back whole:
summary.md (one page), status.json (the same, for programs; the study's and the zoo's stage
times and the zoo's runs too), speed.json, speed_lax.json, report.md (the study's),
benchmark.md (the zoo's, once it completed), artifacts.tar.gz (the study's and the zoo's small
files, results.json included, without checkpoints, arrays or compiled programs, and every part's
full log) and logs.txt (each part's log tail). The summary and status are rewritten after every
part, so a run killed from outside still leaves what it had. Bulky work (the study's workdir,
checkpoints) goes to --scratch.

Only the standard library is used here: the script must start on a machine where the project's
own requirements are not installed yet. Exit status: 0 when every part that ran ended ok (skips
allowed), 1 otherwise, 2 with --require-gpu on a machine whose jax.devices() is not a GPU.
"""

import argparse
import datetime
import gzip
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]
PARTS = ("install", "device", "speed", "speed_lax", "study", "zoo")
# Seconds per part, adding up to the 8 minutes one accelerator call is sized for (a 10-minute
# command, the device's start and the transfers inside a 15-minute budget). The study keeps
# one and a half times its goal, so a miss is still measured; the zoo, last, gets its own
# limit plus what the others leave unused.
LIMITS = {"install": 20, "device": 45, "speed": 75, "speed_lax": 60, "study": 180, "zoo": 100}
TOTAL_LIMIT = 480
# --cpu-smoke runs small parts on a shared CPU; its limits only need to catch a hang.
SMOKE_LIMITS = {"install": 60, "device": 90, "speed": 400, "speed_lax": 400, "study": 600,
                "zoo": 300}
SMOKE_TOTAL_LIMIT = 1800
# The part that inherits the time the parts before it left unused of their limits.
HEIR = "zoo"
# The zoo part: the full profile's LfF protocol (MLP 3x100, 100 epochs, 4 ratios, 3 seeds) for
# four methods; the config's profile (full, or tiny for --cpu-smoke) goes before.
ZOO_ARGS = ("--config.run_protocols=lff", "--config.methods=erm,groupdro,jtt,lff")
# --cpu-smoke: one cheap model for the cost probe of the study protocol (ShapeCNN is slow on a
# CPU); the probe itself is still exercised.
ZOO_SMOKE_ARGS = ("--config.project_to.protocols.study.models=cheater",)
MIN_PART_S = 5  # A part is not started with less than this left of the total.
KILL_GRACE_S = 10
MAX_OUT_FILES = 8  # What a device run's $OUT brings back (flat files, at most this many).
MAX_ARTIFACTS_BYTES = 15 * 2 ** 20
LOG_TAIL_LINES = 60
# What the parts write: launch.speed's result, the zoo's report, and of the zoo's workdir (ccmnist/
# zoo/plan.py's layout) the run list, a finished run's wall time and a diverged run's error.
SPEED_FILE, ZOO_REPORT = "speed.json", "benchmark.md"
ZOO_PLAN, ZOO_TIME, ZOO_FAILED = "train_plan.json", "benchmark_time.json", "failed.json"
OUT_FILES = ("summary.md", "status.json", SPEED_FILE, "speed_lax.json", "report.md", ZOO_REPORT,
             "artifacts.tar.gz", "logs.txt")
# Written by earlier versions of this script: removed too, so that nothing of an earlier run
# passes for this one's.
OLD_OUT_FILES = ("stages.json", "bench.json", "bench_lax.json")
# Left out of artifacts.tar.gz: the zoo's persistent XLA cache is large and of no use off its
# machine.
ARTIFACT_SKIP_DIRS = ("checkpoints", "compilation_cache")

# Wheels carried to the accelerator: the project's requirements its image lacks. Their own
# requirements are carried too unless named in ACCELERATOR_HAS, the part of the project's
# dependency closure the H200 image holds (its package list, read 2026-11-17).
CARRY = ("ml_collections",)
ACCELERATOR_HAS = frozenset((
    "absl-py", "aiofiles", "chex", "contourpy", "cycler", "etils", "flax", "fonttools",
    "humanize", "jax", "jaxlib", "kiwisolver", "markdown-it-py", "matplotlib", "mdurl",
    "ml-dtypes", "msgpack", "numpy", "opt-einsum", "optax", "orbax-checkpoint", "packaging",
    "pillow", "prometheus-client", "protobuf", "psutil", "pygments", "pyparsing",
    "python-dateutil", "pyyaml", "rich", "scipy", "simplejson", "six", "tensorstore", "toolz",
    "treescope", "typing-extensions", "uvloop"))
PIP_PLATFORM = ("--python-version", "3.12", "--implementation", "cp",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--platform", "manylinux2014_x86_64")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
# NVIDIA H100 / H200 SXM datasheet peaks (dense, without 2:4 sparsity; TFLOP/s), beside the
# speed benchmark's own measured peak.
DATASHEET_TFLOPS = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
}
GOALS = {"study_s": 120.0, "k8_ratio": 3.0}

# Run by the device part: jax's devices and versions, and MNIST from the data directory alone
# (an empty cache, no tfds, no mirror), one JSON line.
PROBE = r"""
import json, os, sys, tempfile, traceback
r = {"python": sys.version.split()[0], "executable": sys.executable}
try:
  import jax, jaxlib
  ds = jax.devices()
  r.update(platform=ds[0].platform, kind=ds[0].device_kind, count=len(ds),
           devices=[str(d) for d in ds], backend=jax.default_backend(), jax=jax.__version__,
           jaxlib=jaxlib.__version__)
except Exception as e:
  r["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
for name in ("flax", "optax", "orbax.checkpoint", "ml_collections"):
  try:
    m = __import__(name, fromlist=["_"])
    r.setdefault("modules", {})[name] = [getattr(m, "__version__", "?"), m.__file__]
  except Exception as e:
    r.setdefault("modules", {})[name] = [None, repr(e)]
data_dir = os.environ.get("CCMNIST_DATA_DIR")
if data_dir:
  os.environ["CCMNIST_CACHE"] = tempfile.mkdtemp(prefix="probe_cache_")
  try:
    from ccmnist.data import mnist
    for split in ("train", "test"):
      mnist.load(split, data_dir=data_dir, use_tfds=False, use_mirror=False)
    r["mnist"] = "ok"
  except Exception as e:
    r["mnist"] = "failed: " + "".join(traceback.format_exception_only(type(e), e)).strip()
else:
  r["mnist"] = "CCMNIST_DATA_DIR not set"
print("PROBE " + json.dumps(r), flush=True)
"""


class UsageError(ValueError):
  """A bad command-line value; the message says which and how to fix it."""


def parse_limits(items, defaults: dict) -> dict:
  """defaults updated by 'part=seconds' items; unknown parts and non-positive seconds fail."""
  limits = dict(defaults)
  for item in items or ():
    name, sep, value = item.partition("=")
    if not sep or name not in PARTS:
      raise UsageError(f"--limit {item!r}: use PART=SECONDS with PART one of {', '.join(PARTS)}.")
    try:
      seconds = float(value)
    except ValueError:
      seconds = float("nan")
    if not seconds > 0 or math.isinf(seconds):
      raise UsageError(f"--limit {item!r}: SECONDS must be a positive number.")
    limits[name] = seconds
  return limits


def part_timeout(limit: float, deadline: float, now: float) -> float | None:
  """The time a part may take: its limit, cut to what is left of the total; None: do not start."""
  left = deadline - now
  if left < MIN_PART_S:
    return None
  return min(limit, left)


def default_out_dir(environ=None) -> pathlib.Path:
  environ = os.environ if environ is None else environ
  return pathlib.Path(environ.get("OUT") or "accelerator_out")


def plan(scratch: pathlib.Path, *, python: str, smoke: bool, limits: dict) -> list:
  """The parts to run: dicts of name, argv (None for the install part), limit_s, note, and
  inherits (whether the part also gets the time earlier parts left unused)."""
  speed = [python, "-m", "launch.speed"] + (["--quick", "--repeats=1"] if smoke else [])
  profile = "tiny" if smoke else "full"
  zoo = f"configs/zoo.py:{profile}"
  parts = [
      dict(name="install", argv=None, note="pip install .whl/*.whl"),
      dict(name="device", argv=[python, "-c", PROBE],
           note="jax.devices(), MNIST from the data dir"),
      dict(name="speed", argv=speed + [f"--workdir={scratch / 'speed'}"],
           note="default conv formulation"),
      dict(name="speed_lax", argv=speed + [f"--workdir={scratch / 'speed_lax'}", "--conv_impl=lax"],
           note="conv formulation lax"),
      dict(name="study", argv=[python, "-m", "launch.study", f"--config=configs/study.py:{profile}",
                               f"--workdir={scratch / 'study'}"],
           note=f"configs/study.py:{profile}"),
      dict(name="zoo", argv=[python, "-m", "launch.zoo", f"--config={zoo}", *ZOO_ARGS,
                             *(ZOO_SMOKE_ARGS if smoke else ()), f"--workdir={scratch / 'zoo'}"],
           note=f"{zoo}, LfF protocol: ERM, GroupDRO, JTT, LfF")]
  for p in parts:
    p["limit_s"] = limits[p["name"]]
    p["inherits"] = p["name"] == HEIR
  return parts


def run_part(argv, *, log_path: pathlib.Path, timeout: float, env=None, cwd=None) -> dict:
  """Runs argv in its own process group, output to log_path; kills the group at the timeout.

  Returns {'status': 'ok'|'failed'|'timeout', 'rc', 'wall_s'}.
  """
  log_path.parent.mkdir(parents=True, exist_ok=True)
  t0 = time.monotonic()
  with open(log_path, "ab") as log:
    log.write(f"$ {shlex.join(str(a) for a in argv)}\n".encode())
    log.flush()
    try:
      proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
      log.write(f"cannot start: {e}\n".encode())
      return {"status": "failed", "rc": None, "wall_s": time.monotonic() - t0}
    try:
      rc = proc.wait(timeout=timeout)
      status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
      _kill_group(proc)
      rc, status = proc.returncode, "timeout"
      log.write(f"\n[accelerator_check] killed at its limit of {timeout:.0f} s\n".encode())
    except BaseException:  # Interrupted (SIGTERM, ^C): the part must not outlive the check.
      _kill_group(proc)
      log.write(b"\n[accelerator_check] interrupted\n")
      raise
  return {"status": status, "rc": rc, "wall_s": time.monotonic() - t0}


def _kill_group(proc) -> None:
  """SIGTERM to the part's process group, then SIGKILL to whatever of it is left."""
  for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      pass
    try:
      proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
      pass


def install_wheels(repo: pathlib.Path, site: pathlib.Path, *, python: str, log_path, timeout):
  """pip-installs .whl/*.whl into site (offline); status 'skipped' when there are none."""
  wheels = sorted((repo / ".whl").glob("*.whl"))
  if not wheels:
    return {"status": "skipped", "rc": None, "wall_s": 0.0,
            "note": "skipped: no wheels in .whl/ (the requirements must be installed already)"}
  argv = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
          "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
  result = run_part(argv, log_path=log_path, timeout=timeout, cwd=repo)
  result["note"] = f"{len(wheels)} wheel(s): " + ", ".join(w.name for w in wheels)
  return result


def part_env(repo: pathlib.Path, scratch: pathlib.Path, *, site=None, keep_cache=False,
             environ=None) -> dict:
  """The parts' environment: the project (and the carried wheels) importable without pip
  install, MNIST from the carried .mnist/, and a fresh cache so a run builds its splits as on a
  bare machine."""
  env = dict(os.environ if environ is None else environ)
  path = ([str(site)] if site else []) + [str(repo)]
  if env.get("PYTHONPATH"):
    path.append(env["PYTHONPATH"])
  env["PYTHONPATH"] = os.pathsep.join(path)
  env["PYTHONUNBUFFERED"] = "1"
  if not env.get("CCMNIST_DATA_DIR") and (repo / ".mnist").is_dir():
    env["CCMNIST_DATA_DIR"] = str(repo / ".mnist")
  if not keep_cache:
    env["CCMNIST_CACHE"] = str(scratch / "cache")
  return env


def parse_probe(log_text: str) -> dict:
  """The device probe's JSON line from its log; {} when it printed none."""
  for line in reversed(log_text.splitlines()):
    if line.startswith("PROBE "):
      try:
        return json.loads(line[len("PROBE "):])
      except json.JSONDecodeError:
        return {}
  return {}


def read_jsonl(path: pathlib.Path) -> list:
  """The rows of a JSON-lines file, [] without one; a line a kill cut short is left out."""
  try:
    lines = path.read_text(encoding="utf-8").splitlines()
  except OSError:
    return []
  rows = []
  for line in lines:
    try:
      rows.append(json.loads(line))
    except ValueError:
      pass
  return rows


def training_progress(run_dir: pathlib.Path) -> dict:
  """A training workdir's epochs from its metrics.jsonl and config.json: {'epoch' (the last
  finished), 'epochs' (planned), 'examples_per_s' (steady: the median over the epochs after
  the first, which compiles, as ccmnist/zoo/cost.py's steady_rate), 'last_examples_per_s'}.
  Rates are training examples per second over every replica, evaluation excluded."""
  rows = read_jsonl(run_dir / "metrics.jsonl")
  rates = [r["train_img_per_s"] for r in rows if "train_img_per_s" in r]
  train = (read_json(run_dir / "config.json") or {}).get("train") or {}
  return {"epoch": max((r.get("epoch", 0) for r in rows), default=0),
          "epochs": train.get("epochs"),
          "examples_per_s": statistics.median(rates[1:] or rates) if rates else None,
          "last_examples_per_s": rates[-1] if rates else None}


def zoo_outcome(work: pathlib.Path):
  """What the zoo part left in its workdir, from the files the zoo writes: {'planned' (runs in
  train_plan.json; None before it was written), 'runs' and 'probes' (those that finished, in
  training order: the key, 'status' done or failed, wall 'seconds' and 'device' of
  benchmark_time.json, failed.json's 'error', training_progress), 'in_progress' (the run or
  probe it was training when stopped: 'what' and training_progress), 'stages' (stages.json),
  'completed' (its report and results.json written)}; None before the part made its workdir."""
  if not work.is_dir():
    return None
  plan_ = read_json(work / ZOO_PLAN) or {}
  keys = plan_.get("runs") or []
  out = {"planned": len(keys) if plan_ else None, "runs": [], "probes": [], "in_progress": None,
         "stages": read_json(work / "stages.json"),
         "completed": (work / ZOO_REPORT).is_file() and (work / "results.json").is_file()}
  todo = [("runs", f"run {i}/{len(keys)} ", key, work / "runs" / key)
          for i, key in enumerate(keys, 1)]
  todo += [("probes", "cost probe ", key, work / "cost_probe" / key)
           for key in plan_.get("probes") or []]
  for kind, what, key, run_dir in todo:
    timing, failed = read_json(run_dir / ZOO_TIME), read_json(run_dir / ZOO_FAILED)
    if timing is not None or failed is not None:
      timing = timing or {}
      out[kind].append({"key": key, "status": "failed" if failed is not None else "done",
                        "seconds": timing.get("wall_s"), "device": timing.get("device"),
                        **({"error": failed.get("error")} if failed is not None else {}),
                        **training_progress(run_dir)})
    elif run_dir.is_dir() and out["in_progress"] is None:
      out["in_progress"] = {"what": what + key, **training_progress(run_dir)}
  return out


def is_gpu(probe: dict) -> bool:
  return probe.get("platform") == "gpu"


def read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return None


# ---------------------------------------------------------------------------------------------
# The summary.


def _num(x, fmt="{:,.0f}") -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "n/a"
  return fmt.format(x)


def _flops(x) -> str:
  if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
    return "n/a"
  for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
    if x >= scale:
      return f"{x / scale:,.2f} {unit}"
  return f"{x / 1e6:,.2f} MFLOP/s"


def _goal(value, goal, *, below: bool) -> str:
  if value is None:
    return "not measured"
  met = value < goal if below else value >= goal
  return "goal met" if met else "goal NOT met"


def _datasheet(kind: str):
  for chip, peaks in DATASHEET_TFLOPS.items():
    if chip in (kind or ""):
      return chip, peaks
  return None, None


def _device_line(d: dict) -> str:
  if not d:
    return "unknown"
  return d.get("description") or f"{d.get('count', '?')} x {d.get('platform')}:{d.get('kind')}"


def accelerator_banner(probe: dict, speeds: dict, stages, zoo_stages=None) -> list:
  """Lines that stop a CPU (or mixed) run from being read as an accelerator result."""
  lines = []
  if not probe:
    lines.append("> **NO DEVICE PROBE.** The device part printed nothing; nothing below is "
                 "known to come from an accelerator.")
  elif not is_gpu(probe):
    lines.append(f"> **NOT AN ACCELERATOR RESULT.** `jax.devices()` is "
                 f"`{probe.get('platform', probe.get('error', '?'))}` "
                 f"({probe.get('count', '?')} x {probe.get('kind', '?')}), not a GPU. Every "
                 "number below was measured on that device; do not quote it as a GPU figure.")
  for name, b in speeds.items():
    platform = (b or {}).get("device", {}).get("platform")
    if b and probe and platform != probe.get("platform"):
      lines.append(f"> **DEVICE MISMATCH.** {name}.json ran on `{platform}`, the probe saw "
                   f"`{probe.get('platform')}`.")
  for what, times in (("study", stages), ("zoo", zoo_stages)):
    kinds = {v.get("device") for v in (times or {}).values() if isinstance(v, dict)}
    if probe and kinds and kinds != {probe.get("kind")}:
      lines.append(f"> **DEVICE MISMATCH.** The {what}'s stages ran on "
                   f"{sorted(map(str, kinds))}, the probe saw `{probe.get('kind')}`.")
  return lines


def summary_markdown(status: dict, *, speed=None, speed_lax=None, stages=None,
                     zoo=None) -> str:
  """summary.md from status (see main) and the parts' outputs (each None when absent;
  zoo: zoo_outcome's dict)."""
  probe = status.get("probe") or {}
  parts = status.get("parts") or []
  by_name = {p["name"]: p for p in parts}
  out = [f"# Accelerator check, {status.get('started', '?')}", ""]
  out += accelerator_banner(probe, {"speed": speed, "speed_lax": speed_lax}, stages,
                            (zoo or {}).get("stages"))
  if status.get("smoke"):
    out.append("> **CPU SMOKE RUN.** Reduced parts (launch.speed --quick --repeats=1, "
               "configs/study.py:tiny, configs/zoo.py:tiny): a test of this script, not "
               "a measurement.")
  if out[-1] != "":
    out.append("")
  mods = probe.get("modules") or {}
  ml = mods.get("ml_collections") or [None, None]
  out += [
      "| | |", "|---|---|",
      f"| device | {_probe_device(probe)} |",
      f"| jax | {probe.get('jax', 'n/a')} (jaxlib {probe.get('jaxlib', 'n/a')}), python "
      f"{probe.get('python', 'n/a')} |",
      f"| ml_collections | {ml[0] or 'missing'} ({ml[1]}) |",
      f"| MNIST | {probe.get('mnist', 'n/a')} (CCMNIST_DATA_DIR={status.get('data_dir')}) |",
      f"| host | {status.get('host')} ({status.get('cpus')} CPUs) |",
      f"| total wall | {_num(status.get('wall_s'), '{:.0f}')} s of a {status.get('total_limit_s')}"
      " s limit |",
      "", "## Parts", "",
      "| part | status | wall s | limit s | what |", "|---|---|---|---|---|"]
  for p in parts:
    rc = f" (rc {p['rc']})" if p.get("status") == "failed" and p.get("rc") is not None else ""
    out.append(f"| {p['name']} | **{p['status']}**{rc} | {_num(p.get('wall_s'), '{:.1f}')} | "
               f"{_num(p.get('timeout_s', p.get('limit_s')), '{:.0f}')} | {p.get('note', '')} |")
  out += ["", f"## Speed ({SPEED_FILE}, default conv formulation)", ""]
  out += _speed_section(speed, by_name.get("speed"))
  out += ["", "## Conv formulation: default against lax", ""]
  out += _conv_section(speed, speed_lax, by_name.get("speed_lax"))
  out += ["", "## K = 8 seeds: vmapped against 8 runs in a row", ""]
  out += _k8_section(speed)
  out += ["", "## Full study (configs/study.py:full, 3 seeds)" if not status.get("smoke")
          else "## Study (configs/study.py:tiny)", ""]
  out += _study_section(stages, by_name.get("study"), smoke=status.get("smoke"))
  out += ["", "## The zoo (debiasing benchmark)", ""]
  out += _zoo_section(zoo, by_name.get("zoo"))
  out += ["", f"Files here: {', '.join(status.get('files') or [])}. Full logs in "
          "artifacts.tar.gz (logs/), tails in logs.txt.", ""]
  return "\n".join(out)


def _probe_device(probe: dict) -> str:
  if not probe:
    return "unknown (no probe)"
  if "error" in probe and "platform" not in probe:
    return f"jax failed: {probe['error']}"
  gpu = "GPU" if is_gpu(probe) else "NOT A GPU"
  return (f"{probe.get('count')} x {probe.get('platform')}:{probe.get('kind')} "
          f"(backend {probe.get('backend')}; {gpu})")


def _missing(part) -> list:
  if not part:
    return ["not run."]
  return [f"no output: the part was **{part['status']}** ({part.get('note', '')}); "
          "see logs.txt."]


def _speed_section(speed, part) -> list:
  if not speed:
    return _missing(part)
  peak = speed.get("peak_flop_per_s")
  rows = [f"Device {_device_line(speed.get('device'))}, jax {speed.get('jax_version')}, "
          f"{speed.get('repeats')} repeats (medians).", "",
          "| workload | img/s | compile s | achieved FLOP/s | of measured peak |",
          "|---|---|---|---|---|"]
  for k, v in (speed.get("train_img_per_s") or {}).items():
    frac = (speed.get("train_fraction_of_peak") or {}).get(k)
    compile_s = (speed.get("train_compile_s") or {}).get(k)
    achieved = (speed.get("train_achieved_flop_per_s") or {}).get(k)
    rows.append(f"| train {k} | {_num(v)} | {_num(compile_s, '{:.1f}')} | {_flops(achieved)} | "
                f"{_num(None if frac is None else 100 * frac, '{:.2f}%')} |")
  pgd = speed.get("pgd_setting") or {}
  rows += [f"| eval | {_num(speed.get('eval_img_per_s'))} | | | |",
           f"| PGD (Linf {pgd.get('eps')}, {pgd.get('steps')} steps, batch {pgd.get('batch')}) | "
           f"{_num(speed.get('pgd_img_per_s'), '{:,.1f}')} | | | |", "",
           f"Peak: {_flops(peak)}, {speed.get('peak_flop_per_s_method', 'measured')}."]
  chip, sheet = _datasheet((speed.get("device") or {}).get("kind", ""))
  best = max((speed.get("train_achieved_flop_per_s") or {}).values(), default=None,
             key=lambda x: x if isinstance(x, (int, float)) and math.isfinite(x) else -1)
  if sheet and isinstance(best, (int, float)) and math.isfinite(best):
    rows.append(f"Datasheet ({chip}, dense): " + ", ".join(
        f"{k} {v:g} TFLOP/s (best train workload at {100 * best / (v * 1e12):.3f}%)"
        for k, v in sheet.items()) + ".")
  rows.append(f"Coloring 70k digits: {_num(speed.get('coloring_s_70k'), '{:.2f}')} s "
              f"({speed.get('coloring_source')} digits).")
  return rows


def _conv_section(speed, lax, part) -> list:
  if not (speed and lax):
    return ([f"no default {SPEED_FILE}."] if not speed else []) + (
        _missing(part) if not lax else [])
  default_impl = speed.get("conv_impl", "default")
  rows = [f"| workload | {default_impl} img/s | lax img/s | lax / {default_impl} |",
          "|---|---|---|---|"]
  ratios = []
  for k, v in (speed.get("train_img_per_s") or {}).items():
    w = (lax.get("train_img_per_s") or {}).get(k)
    r = w / v if v and w else None
    if r:
      ratios.append(r)
    rows.append(f"| train {k} | {_num(v)} | {_num(w)} | {_num(r, '{:.2f}x')} |")
  for key, label in (("eval_img_per_s", "eval"), ("pgd_img_per_s", "PGD")):
    v, w = speed.get(key), lax.get(key)
    r = w / v if v and w else None
    rows.append(f"| {label} | {_num(v)} | {_num(w)} | {_num(r, '{:.2f}x')} |")
  if ratios:
    g = math.exp(sum(map(math.log, ratios)) / len(ratios))
    winner = "lax" if g > 1 else default_impl
    rows += ["", f"Faster here on training: **{winner}** (geometric mean of lax / "
                 f"{default_impl} over the train workloads: {g:.2f}x)."]
  return rows


def _k8_section(speed) -> list:
  if not speed or speed.get("k8_sequential_over_vmapped") is None:
    return [f"no K=8 entry (no {SPEED_FILE})."]
  r = speed["k8_sequential_over_vmapped"]
  return [f"8 runs in a row / vmapped: **{r:.2f}x** ({speed.get('k8_sequential_s', 0):.2f} s "
          f"against {speed.get('k8_vmapped_s', 0):.2f} s, {speed.get('k8_steps')} steps each); "
          f"goal at least {GOALS['k8_ratio']:g}x: {_goal(r, GOALS['k8_ratio'], below=False)}."]


def _stage_rows(stages: dict) -> list:
  """A stages.json (the study's or the zoo's) as a table, with the sum of its stages."""
  stages = {k: v for k, v in stages.items() if isinstance(v, dict)}
  rows = ["", "| stage | seconds | device |", "|---|---|---|"]
  rows += [f"| {k} | {_num(v.get('seconds'), '{:.1f}')} | {v.get('device', '')} |"
           for k, v in stages.items()]
  return rows + [f"| sum of stages | {sum(v.get('seconds') or 0 for v in stages.values()):.1f} | |"]


def _study_section(stages, part, *, smoke=False) -> list:
  part = part or {}
  rows = []
  wall = part.get("wall_s")
  if part.get("status") == "ok":
    goal = "" if smoke else (f"; goal under {GOALS['study_s']:g} s: "
                             f"{_goal(wall, GOALS['study_s'], below=True)}")
    rows.append(f"Wall time **{wall:.0f} s** (the process: startup and compiles included){goal}.")
  elif part:
    rows.append(f"**{part.get('status')}** after {_num(wall, '{:.0f}')} s ({part.get('note', '')})"
                "; the stages it finished:")
  else:
    rows.append("not run.")
  if stages:
    rows += _stage_rows(stages)
  elif part:
    rows.append("(no stages.json: no stage finished)")
  return rows


def _zoo_section(outcome, part) -> list:
  part = part or {}
  note, state = part.get("note", ""), part.get("status", "not run")
  if state in ("skipped", "not_run") or not part:
    return [note if note.startswith(state.replace("_", " ")) else f"{state}: {note}"]
  rows = [f"{note}: **{state}** after {_num(part.get('wall_s'), '{:.0f}')} s"
          + (f" (its limit {part['limit_s']:.0f} s plus {part['inherited_s']:.0f} s the parts "
             "before it left unused)" if part.get("inherited_s") else "") + "."]
  outcome = outcome or {}
  runs, probes = outcome.get("runs") or [], outcome.get("probes") or []
  if not runs:
    rows.append("No run finished; see logs.txt.")
  else:
    done = [r for r in runs if r["status"] == "done"]
    planned = outcome.get("planned")
    rows += ["", f"{len(done)} of {planned if planned is not None else '?'} runs done"
             + (f", {len(runs) - len(done)} failed" if len(runs) > len(done) else "")
             + f", {sum(r['seconds'] or 0 for r in runs):.0f} s in all. Seconds: a run's wall "
             "time (compiles, per-epoch evaluation and checkpoints included; its "
             f"{ZOO_TIME}); examples/s: its steady training rate over every replica (the median "
             "of metrics.jsonl's epochs after the first), the rate benchmark.md's Cost table "
             "prices runs at."]
  if runs or probes:
    rows += ["", "| run | seconds | epochs | examples/s |", "|---|---|---|---|"]
    rows += [f"| {'cost probe ' if r in probes else ''}{r['key']}"
             f"{' (failed)' if r['status'] == 'failed' else ''} | "
             f"{_num(r['seconds'], '{:.1f}')} | {r['epoch']}/{_num(r['epochs'], '{}')} | "
             f"{_num(r['examples_per_s'])} |" for r in runs + probes]
  if outcome.get("in_progress"):
    ip = outcome["in_progress"]
    rows += ["", f"Stopped during {ip['what']}, after epoch {ip['epoch']}/"
                 f"{_num(ip['epochs'], '{}')} ({_num(ip['last_examples_per_s'])} examples/s in "
                 "its last epoch)."]
  if outcome.get("stages"):
    rows += _stage_rows(outcome["stages"])
  if outcome.get("completed"):
    rows += ["", f"Completed: {ZOO_REPORT} here, results.json in artifacts.tar.gz (zoo/)."]
  return rows


# ---------------------------------------------------------------------------------------------
# Collecting the outputs.


def _small_files(root: pathlib.Path):
  """Files of a workdir worth keeping: no checkpoints, no compiled programs, no arrays, no
  locks."""
  for path in sorted(root.rglob("*")):
    rel = path.relative_to(root)
    if (path.is_file() and not set(ARTIFACT_SKIP_DIRS) & set(rel.parts)
        and path.suffix not in (".npz", ".npy", ".lock")):
      yield path, rel


def write_artifacts(out: pathlib.Path, scratch: pathlib.Path) -> str:
  """artifacts.tar.gz: the study's and the zoo's small files and every full log."""
  def build(with_png: bool):
    tmp = out / ".artifacts.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
      for sub in ("study", "zoo", "logs"):
        if (scratch / sub).is_dir():
          for path, rel in _small_files(scratch / sub):
            if with_png or path.suffix != ".png":
              tar.add(path, arcname=f"{sub}/{rel}")
    return tmp
  tmp = build(True)
  note = "with figures"
  if tmp.stat().st_size > MAX_ARTIFACTS_BYTES:
    tmp, note = build(False), "figures left out (too large)"
  os.replace(tmp, out / "artifacts.tar.gz")
  return note


def write_logs_tail(out: pathlib.Path, logs: pathlib.Path, parts) -> None:
  chunks = []
  for p in parts:
    path = logs / f"{p['name']}.log"
    if path.is_file():
      lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
      chunks.append(f"===== {p['name']}: {p['status']} ({len(lines)} lines, last "
                    f"{min(len(lines), LOG_TAIL_LINES)}) =====\n"
                    + "\n".join(lines[-LOG_TAIL_LINES:]))
  _write_text(out / "logs.txt", "\n\n".join(chunks) + "\n")


def _write_text(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(text, encoding="utf-8")
  os.replace(tmp, path)


def _copy(src: pathlib.Path, dst: pathlib.Path) -> bool:
  if not src.is_file():
    return False
  tmp = dst.with_name(f".{dst.name}.tmp")
  shutil.copyfile(src, tmp)
  os.replace(tmp, dst)
  return True


def collect(out: pathlib.Path, scratch: pathlib.Path, status: dict, *, final: bool) -> str:
  """Copies the parts' outputs into out, rewrites status.json and summary.md; returns it."""
  _copy(scratch / "speed" / SPEED_FILE, out / SPEED_FILE)
  _copy(scratch / "speed_lax" / SPEED_FILE, out / "speed_lax.json")
  _copy(scratch / "study" / "report.md", out / "report.md")
  _copy(scratch / "zoo" / ZOO_REPORT, out / ZOO_REPORT)
  status["study_stages"] = read_json(scratch / "study" / "stages.json")
  status["zoo"] = zoo_outcome(scratch / "zoo")
  write_logs_tail(out, scratch / "logs", status["parts"])
  if final:
    status["artifacts"] = write_artifacts(out, scratch)
  status["files"] = sorted({p.name for p in out.iterdir() if p.name in OUT_FILES}
                          | {"summary.md", "status.json"})
  _write_text(out / "status.json", json.dumps(status, indent=1, allow_nan=True) + "\n")
  text = summary_markdown(status, speed=read_json(out / SPEED_FILE),
                          speed_lax=read_json(out / "speed_lax.json"),
                          stages=status["study_stages"], zoo=status["zoo"])
  _write_text(out / "summary.md", text)
  return text


# ---------------------------------------------------------------------------------------------
# The run.


class Interrupted(Exception):
  """The check got SIGTERM or SIGHUP (e.g. its device call ran out of time)."""


def _interrupt(signum, frame):
  del frame
  raise Interrupted(signal.Signals(signum).name)


def unused_s(part: dict, entry: dict) -> float:
  """Seconds of its limit a finished (or skipped, or not run) part left unused."""
  return max(0.0, part["limit_s"] - (entry.get("wall_s") or 0.0))


def _run_one(part, entry, status, args, *, env, scratch, site, python, deadline, total,
             unused=0.0):
  """Runs (or skips) one part, filling entry; returns the parts' environment. unused: what the
  parts before it left of their limits, added to the limit of a part that inherits it."""
  name = part["name"]
  logs = scratch / "logs"
  limit = part["limit_s"]
  if part.get("inherits") and unused > 0:
    limit += unused
    entry["inherited_s"] = unused
  timeout = part_timeout(limit, deadline, time.monotonic())
  if status.get("stop"):
    entry.update(status="not_run", wall_s=0.0, note=status["stop"])
  elif timeout is None:
    entry.update(status="not_run", wall_s=0.0,
                 note=f"not run: the total limit of {total:.0f} s was reached")
  elif name == "install":
    print(f"[accelerator_check] {name} ...", flush=True)
    entry.update(install_wheels(REPO, site, python=python, log_path=logs / "install.log",
                                timeout=timeout), timeout_s=timeout)
  elif part["argv"] is None:
    entry.update(status="skipped", wall_s=0.0)
  else:
    if env is None:
      installed = any(p["name"] == "install" and p["status"] == "ok" for p in status["parts"])
      env = part_env(REPO, scratch, site=site if installed else None, keep_cache=args.keep_cache)
      status["data_dir"] = env.get("CCMNIST_DATA_DIR")
      status["pythonpath"] = env["PYTHONPATH"]
    print(f"[accelerator_check] {name} (limit {timeout:.0f} s) ...", flush=True)
    entry.update(run_part(part["argv"], log_path=logs / f"{name}.log", timeout=timeout,
                          env=env, cwd=REPO), timeout_s=timeout)
    if name == "device":
      probe = parse_probe((logs / "device.log").read_text(encoding="utf-8", errors="replace"))
      status["probe"], status["accelerator"] = probe, is_gpu(probe)
      if not is_gpu(probe):
        print("[accelerator_check] WARNING: jax.devices() is not a GPU "
              f"({probe.get('platform', probe.get('error', 'no probe output'))}); "
              "every number of this run is a non-accelerator number.", flush=True)
        if args.require_gpu:
          status["stop"] = "not run: --require-gpu and jax.devices() is not a GPU"
  return env


def run_check(args) -> int:
  smoke = args.cpu_smoke
  limits = parse_limits(args.limit, SMOKE_LIMITS if smoke else LIMITS)
  total = args.total_limit or (SMOKE_TOTAL_LIMIT if smoke else TOTAL_LIMIT)
  out = pathlib.Path(args.out_dir) if args.out_dir else default_out_dir()
  out = out.resolve()
  out.mkdir(parents=True, exist_ok=True)
  stray = [p.name for p in out.iterdir() if p.name not in OUT_FILES + OLD_OUT_FILES]
  if stray:
    print(f"warning: {out} also holds {stray}; a device run brings back at most "
          f"{MAX_OUT_FILES} files", file=sys.stderr)
  for name in OUT_FILES + OLD_OUT_FILES:  # Nothing of an earlier run may pass for this one's.
    (out / name).unlink(missing_ok=True)
  scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="accelerator_check_")).resolve()
  scratch.mkdir(parents=True, exist_ok=True)
  for sub in ("speed", "speed_lax", "study", "zoo", "logs", "cache"):
    shutil.rmtree(scratch / sub, ignore_errors=True)
  logs = scratch / "logs"
  logs.mkdir(parents=True)
  site = pathlib.Path(args.site).resolve()
  python = args.python or sys.executable

  t_start = time.monotonic()
  deadline = t_start + total
  parts = plan(scratch, python=python, smoke=smoke, limits=limits)
  status = {"started": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"),
            "smoke": smoke, "total_limit_s": total, "host": socket.gethostname(),
            "cpus": os.cpu_count(), "out": str(out), "scratch": str(scratch), "probe": {},
            "parts": [], "accelerator": False}
  env = None
  rc = 0
  unused = 0.0
  previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
  try:
    for part in parts:
      entry = {k: v for k, v in part.items() if k != "argv"}
      if part["argv"]:
        entry["command"] = shlex.join(a if a != PROBE else "<probe>" for a in part["argv"])
      t_part = time.monotonic()
      try:
        env = _run_one(part, entry, status, args, env=env, scratch=scratch, site=site,
                       python=python, deadline=deadline, total=total, unused=unused)
      except (KeyboardInterrupt, Interrupted) as e:
        entry.update(status="interrupted", wall_s=time.monotonic() - t_part,
                     note=f"the check itself was stopped ({type(e).__name__})")
        status["parts"].append(entry)
        rc = 130
        break
      print(f"[accelerator_check] {part['name']}: {entry['status']} "
            f"({entry.get('wall_s', 0):.1f} s) {entry.get('note', '')}", flush=True)
      status["parts"].append(entry)
      unused += unused_s(part, entry)
      status["wall_s"] = time.monotonic() - t_start
      collect(out, scratch, status, final=False)
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  if status.get("stop") and rc == 0:
    rc = 2
  status["wall_s"] = time.monotonic() - t_start
  status.pop("stop", None)
  text = collect(out, scratch, status, final=True)
  print(text, flush=True)
  if rc == 0 and any(p["status"] not in ("ok", "skipped") for p in status["parts"]):
    rc = 1
  return rc


# ---------------------------------------------------------------------------------------------
# --prepare: what the accelerator cannot fetch, fetched here.


def _norm(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def wheel_requirements(wheel: pathlib.Path) -> list:
  """Names of a wheel's unconditional (non-extra) requirements, from its METADATA."""
  with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    text = z.read(meta).decode("utf-8", errors="replace")
  names = []
  for line in text.splitlines():
    if line.startswith("Requires-Dist:"):
      req = line[len("Requires-Dist:"):].strip()
      if "extra" in req.partition(";")[2]:
        continue
      names.append(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group(0))
  return names


def wheel_project(wheel: pathlib.Path) -> str:
  return _norm(wheel.name.split("-")[0])


def prepare_wheels(dest: pathlib.Path, *, python: str) -> list:
  """Downloads CARRY (at the versions installed here) and the requirements the accelerator
  lacks, one version each, for its Python and platform; returns the wheel names."""
  dest.mkdir(parents=True, exist_ok=True)
  todo, done = list(CARRY), set()
  while todo:
    name = todo.pop()
    if _norm(name) in done:
      continue
    done.add(_norm(name))
    version = importlib.metadata.version(name)
    for old in dest.glob("*.whl"):  # Two versions of one project stop the whole install.
      if wheel_project(old) == _norm(name) and f"-{version}-" not in old.name:
        old.unlink()
    subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    *PIP_PLATFORM, "-d", str(dest), f"{name}=={version}"], check=True)
    wheel = next(w for w in dest.glob("*.whl")
                 if wheel_project(w) == _norm(name) and f"-{version}-" in w.name)
    for req in wheel_requirements(wheel):
      if _norm(req) not in ACCELERATOR_HAS and _norm(req) not in done:
        todo.append(req)
  return sorted(w.name for w in dest.glob("*.whl"))


def copy_mnist_gz(cache: pathlib.Path, dest: pathlib.Path, sha256: dict) -> list:
  """The four MNIST files from cache (raw or .gz) into dest as .gz, checked against sha256."""
  dest.mkdir(parents=True, exist_ok=True)
  written = []
  for name in MNIST_FILES:
    raw, gz = cache / name, cache / f"{name}.gz"
    if raw.is_file():
      data = raw.read_bytes()
    elif gz.is_file():
      data = gzip.decompress(gz.read_bytes())
    else:
      raise FileNotFoundError(f"{raw} (or .gz) missing: fetch MNIST into the cache first.")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256[name]:
      raise ValueError(f"{raw}: SHA-256 {digest} is not MNIST's {sha256[name]}.")
    target = dest / f"{name}.gz"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    os.replace(tmp, target)
    written.append(target.name)
  return written


FETCH_MNIST = r"""
import json
from ccmnist.data import mnist
mnist.load("train"); mnist.load("test")
print("MNIST " + json.dumps({"cache": str(mnist.cache_dir()), "sha256": mnist.SHA256}))
"""


def prepare(args) -> int:
  python = args.python or sys.executable
  wheels = prepare_wheels(REPO / ".whl", python=python)
  print(f"[prepare] .whl/: {', '.join(wheels)}")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
  env.pop("CCMNIST_DATA_DIR", None)
  res = subprocess.run([python, "-c", FETCH_MNIST], cwd=REPO, env=env, check=True,
                       capture_output=True, text=True)
  line = next(x for x in reversed(res.stdout.splitlines()) if x.startswith("MNIST "))
  info = json.loads(line[len("MNIST "):])
  names = copy_mnist_gz(pathlib.Path(info["cache"]), REPO / ".mnist", info["sha256"])
  print(f"[prepare] .mnist/: {', '.join(names)} "
        f"({sum((REPO / '.mnist' / n).stat().st_size for n in names) / 2 ** 20:.1f} MiB)")
  # The loader must take them from there alone (what the device part checks again there).
  env["CCMNIST_DATA_DIR"] = str(REPO / ".mnist")
  res = subprocess.run([python, "-c", PROBE], cwd=REPO, env=env, capture_output=True,
                       text=True, check=False)
  mnist_status = parse_probe(res.stdout).get("mnist", "no probe output: " + res.stderr[-500:])
  print(f"[prepare] MNIST from .mnist/ alone: {mnist_status}")
  print("[prepare] carry to the device: .whl and .mnist")
  return 0 if mnist_status == "ok" else 1


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("out_dir", nargs="?", help="output folder (default: $OUT, else "
                 "./accelerator_out)")
  p.add_argument("--prepare", action="store_true", help="here, with a network: download the "
                 "wheels the accelerator lacks into .whl/ and MNIST into .mnist/, then stop")
  p.add_argument("--cpu-smoke", action="store_true", help="small parts (launch.speed --quick "
                 "--repeats=1, configs/study.py:tiny, configs/zoo.py:tiny) with limits "
                 "that only catch hangs")
  p.add_argument("--limit", action="append", metavar="PART=SECONDS",
                 help=f"a part's time limit (parts: {', '.join(PARTS)}); repeatable")
  p.add_argument("--total-limit", type=float, default=None,
                 help=f"seconds for everything (default {TOTAL_LIMIT}, --cpu-smoke "
                 f"{SMOKE_TOTAL_LIMIT})")
  p.add_argument("--scratch", help="work folder for the parts (default: a new temp dir)")
  p.add_argument("--site", default="/tmp/site", help="where the carried wheels are installed")
  p.add_argument("--python", help="the interpreter for the parts (default: this one)")
  p.add_argument("--keep-cache", action="store_true", help="use $CCMNIST_CACHE as is instead "
                 "of a fresh cache in the scratch folder")
  p.add_argument("--require-gpu", action="store_true", help="stop after the device part when "
                 "jax.devices() is not a GPU (exit 2)")
  return p


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    if args.total_limit is not None and not args.total_limit > 0:
      raise UsageError("--total-limit must be positive.")
    return prepare(args) if args.prepare else run_check(args)
  except UsageError as e:
    print(f"accelerator_check: {e}", file=sys.stderr)
    return 64


if __name__ == "__main__":
  sys.exit(main())
