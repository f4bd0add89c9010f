"""JAX (`python -m launch.bench`) against PyTorch (benchmarks/pytorch_baseline.py), alternated.

  python benchmarks/side_by_side.py --repeats=5 --torch_python=~/torch-venv/bin/python \
      --json_out=/tmp/ccmnist/side_by_side.json

Each of `--repeats` alternations runs one JAX process then one PyTorch process (each measuring
every workload `--inner_repeats` times interleaved and reporting medians), so a load change
hits both sides alike. Per workload it prints the median JAX and PyTorch img/s over alternations
and the median and range of the per-alternation JAX / PyTorch ratios, with the 1-minute load
average at start and end. Needs only the standard library itself; run it from the repository
root with the ccmnist environment's python (or pass --jax_python).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
BASELINE = REPO / "benchmarks" / "pytorch_baseline.py"
TRAIN_WORKLOADS = tuple(f"{loss}_b{b}" for loss in ("erm", "gradient_penalty", "consistency")
                        for b in (64, 256))
WORKLOADS = (*TRAIN_WORKLOADS, "eval", "pgd")


def img_per_s(result: dict) -> dict:
  """{workload: img/s} from a bench.json-shaped dict (launch.bench's or the baseline's)."""
  try:
    out = {k: float(result["train_img_per_s"][k]) for k in TRAIN_WORKLOADS}
    out["eval"], out["pgd"] = float(result["eval_img_per_s"]), float(result["pgd_img_per_s"])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"Result lacks img/s for workload {e}; expected bench.json's keys "
                     "train_img_per_s, eval_img_per_s and pgd_img_per_s.") from e
  return out


def parse_json_line(stdout: str) -> dict:
  """The last line of `stdout` that is a JSON object (the baseline prints exactly one)."""
  for line in reversed(stdout.strip().splitlines()):
    line = line.strip()
    if line.startswith("{"):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  raise ValueError("No JSON line in the PyTorch baseline's output; run it by hand to see why: "
                   f"...{stdout[-300:]!r}")


def ratios(jax_runs: list, torch_runs: list) -> dict:
  """{workload: [JAX / PyTorch per alternation]} from paired lists of img_per_s dicts."""
  if len(jax_runs) != len(torch_runs):
    raise ValueError(f"{len(jax_runs)} JAX runs but {len(torch_runs)} PyTorch runs; they pair.")
  return {w: [j[w] / t[w] for j, t in zip(jax_runs, torch_runs)] for w in WORKLOADS}


def summarize(values: list) -> dict:
  """{'median', 'min', 'max'} of a non-empty list."""
  if not values:
    raise ValueError("Nothing to summarize: no alternation finished.")
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary(jax_runs: list, torch_runs: list) -> dict:
  """Per workload: median img/s of each side and the median and range of the ratios."""
  r = ratios(jax_runs, torch_runs)
  return {w: {"jax_img_per_s": statistics.median(j[w] for j in jax_runs),
              "torch_img_per_s": statistics.median(t[w] for t in torch_runs),
              "ratio": summarize(r[w]), "ratios": r[w]} for w in WORKLOADS}


def format_table(s: dict, *, n: int) -> str:
  """A Markdown table of summary()'s dict over `n` alternations."""
  head = f"JAX / PyTorch, median (range), {n} alternations"
  lines = [f"| workload (img/s) | JAX | PyTorch | {head} |", "|---|---|---|---|"]
  for w, v in s.items():
    q = v["ratio"]
    lines.append(f"| {w} | {v['jax_img_per_s']:,.0f} | {v['torch_img_per_s']:,.0f} | "
                 f"{q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) |")
  return "\n".join(lines)


def _run(cmd: list, timeout: float) -> str:
  p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                     check=False)
  if p.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: ...{p.stderr[-800:]}")
  return p.stdout


def run_jax(python: str, inner: int, quick: bool, timeout: float) -> dict:
  with tempfile.TemporaryDirectory(prefix="side_by_side_") as d:
    _run([python, "-m", "launch.bench", f"--workdir={d}", f"--repeats={inner}",
          *(["--quick"] if quick else [])], timeout)
    return json.loads((pathlib.Path(d) / "bench.json").read_text())


def run_torch(python: str, inner: int, quick: bool, threads: int, timeout: float) -> dict:
  return parse_json_line(_run([python, str(BASELINE), f"--repeats={inner}",
                               f"--threads={threads}", *(["--quick"] if quick else [])],
                              timeout))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=5, help="Alternations (JAX then PyTorch).")
  p.add_argument("--inner_repeats", type=int, default=3,
                 help="Repeats inside each process (its medians are what is compared).")
  p.add_argument("--quick", action="store_true", help="Both sides' --quick (noisier).")
  p.add_argument("--jax_python", default=sys.executable)
  p.add_argument("--torch_python", default="~/torch-venv/bin/python")
  p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads.")
  p.add_argument("--timeout_s", type=float, default=600, help="Per process.")
  p.add_argument("--json_out", default="", help="Write every measurement here too.")
  a = p.parse_args(argv)
  a.torch_python = str(pathlib.Path(a.torch_python).expanduser())
  if a.repeats < 1 or a.inner_repeats < 1:
    p.error("--repeats and --inner_repeats must be at least 1.")
  if not pathlib.Path(a.torch_python).exists():
    p.error(f"--torch_python {a.torch_python} does not exist; create it as "
            "benchmarks/README.md says.")
  load_start, t0 = os.getloadavg(), time.time()
  jax_raw, torch_raw = [], []
  for r in range(a.repeats):
    jax_raw.append(run_jax(a.jax_python, a.inner_repeats, a.quick, a.timeout_s))
    torch_raw.append(run_torch(a.torch_python, a.inner_repeats, a.quick, a.threads,
                               a.timeout_s))
    print(f"alternation {r + 1}/{a.repeats} done, {time.time() - t0:.0f} s", file=sys.stderr)
  load_end = os.getloadavg()
  s = summary([img_per_s(x) for x in jax_raw], [img_per_s(x) for x in torch_raw])
  print(format_table(s, n=a.repeats))
  print(f"\nload average (1, 5, 15 min): start {load_start}, end {load_end}; "
        f"{time.time() - t0:.0f} s; torch {torch_raw[0].get('torch_version')}, "
        f"jax {jax_raw[0].get('jax_version')}")
  if a.json_out:
    out = pathlib.Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "load_start": load_start, "load_end": load_end,
                               "start_unix": t0, "summary": s, "jax": jax_raw,
                               "torch": torch_raw}, indent=1))


if __name__ == "__main__":
  main()
