"""JAX (`python -m launch.speed`) against PyTorch (tools/pytorch_baseline.py), alternated.

  python tools/side_by_side.py --repeats=5 --torch_python=~/torch-venv/bin/python \
      --json_out=/tmp/ccmnist/side_by_side.json
  python tools/side_by_side.py --ops ...         # each conv op alone (conv_ops.py)
  python tools/side_by_side.py --real_epoch ...  # launch.train epochs on the quick config

Each of `--repeats` alternations runs one JAX process then one PyTorch process (each measuring
every workload `--inner_repeats` times interleaved and reporting medians), so a load change
hits both sides alike. Per workload it prints the median JAX and PyTorch img/s over alternations
and the median and range of the per-alternation JAX / PyTorch ratios, with the 1-minute load
average at start and end. Needs only the standard library itself; run it from the repository
root with the ccmnist environment's python (or pass --jax_python).

--ops alternates tools/conv_ops.py on both sides instead: per conv op (forward, input
gradient, kernel gradient, per batch size) the median ms of each side and the median and range
of the per-alternation PyTorch ms / JAX ms (above 1: JAX's op is faster).

--real_epoch alternates real training instead: `python -m launch.train` on
configs/cheater.py:quick (ERM, SGD, batch 64, its 20k train images; a fresh workdir each time,
`--epochs` epochs) against the baseline's --epoch_npz on the same train split, which is written
once to a temporary file. Compared is each process's median img/s over its epochs after the
first (launch.train's metrics.jsonl train_img_per_s: the epoch's steps, its shuffle and batch
gathering included, evaluation excluded); the first epoch, which includes compiling (JAX) or
warm-up, is reported apart.
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
BASELINE = REPO / "tools" / "pytorch_baseline.py"
CONV_OPS = REPO / "tools" / "conv_ops.py"
SPEED_FILE = "speed.json"  # What launch.speed writes into its --workdir.
TRAIN_WORKLOADS = tuple(f"{loss}_b{b}" for loss in ("erm", "gradient_penalty", "consistency")
                        for b in (64, 256))
WORKLOADS = (*TRAIN_WORKLOADS, "eval", "pgd")


EPOCH_KEYS = ("later_epochs", "first_epoch")


def img_per_s(result: dict) -> dict:
  """{workload: img/s} from a speed.json-shaped dict (launch.speed's or the baseline's)."""
  try:
    out = {k: float(result["train_img_per_s"][k]) for k in TRAIN_WORKLOADS}
    out["eval"], out["pgd"] = float(result["eval_img_per_s"]), float(result["pgd_img_per_s"])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"Result lacks img/s for workload {e}; expected {SPEED_FILE}'s keys "
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


def ops_per_s(result: dict) -> dict:
  """{op: calls/s} from conv_ops.py's JSON line ({'ms': {op: ms per call}}), so that a ratio of
  rates, as for the workloads, is PyTorch ms / JAX ms."""
  try:
    return {op: 1e3 / float(ms) for op, ms in result["ms"].items()}
  except (KeyError, AttributeError, TypeError, ValueError, ZeroDivisionError) as e:
    raise ValueError(f"conv_ops result lacks ms per op ({e!r}); expected {{'ms': {{op: ms}}}}."
                     ) from e


def epoch_img_per_s(rates: list) -> dict:
  """{'later_epochs': median img/s of epochs 2.., 'first_epoch': epoch 1's} of one process."""
  if len(rates) < 2:
    raise ValueError(f"{len(rates)} epoch(s) measured; --epochs must be at least 2 (the first "
                     "includes compiling or warm-up).")
  return {"later_epochs": statistics.median(rates[1:]), "first_epoch": rates[0]}


def jax_epoch_rates(metrics_jsonl: str) -> list:
  """Each epoch's train_img_per_s from a launch.train workdir's metrics.jsonl text."""
  rows = [json.loads(line) for line in metrics_jsonl.splitlines() if line.strip()]
  return [float(r["train_img_per_s"]) for r in sorted(rows, key=lambda r: r["epoch"])]


def ratios(jax_runs: list, torch_runs: list, keys=WORKLOADS) -> dict:
  """{key: [JAX / PyTorch per alternation]} from paired lists of {key: rate} dicts."""
  if len(jax_runs) != len(torch_runs):
    raise ValueError(f"{len(jax_runs)} JAX runs but {len(torch_runs)} PyTorch runs; they pair.")
  return {w: [j[w] / t[w] for j, t in zip(jax_runs, torch_runs)] for w in keys}


def summarize(values: list) -> dict:
  """{'median', 'min', 'max'} of a non-empty list."""
  if not values:
    raise ValueError("Nothing to summarize: no alternation finished.")
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary(jax_runs: list, torch_runs: list, keys=WORKLOADS) -> dict:
  """Per key: median rate (img/s) of each side and the median and range of the ratios."""
  r = ratios(jax_runs, torch_runs, keys)
  return {w: {"jax_img_per_s": statistics.median(j[w] for j in jax_runs),
              "torch_img_per_s": statistics.median(t[w] for t in torch_runs),
              "ratio": summarize(r[w]), "ratios": r[w]} for w in keys}


def format_table(s: dict, *, n: int, ops: bool = False) -> str:
  """A Markdown table of summary()'s dict over `n` alternations; ops: conv_ops rates, shown
  as ms per call."""
  if ops:
    head = f"PyTorch ms / JAX ms, median (range), {n} alternations"
    lines = [f"| op (ms per call) | JAX | PyTorch | {head} |", "|---|---|---|---|"]
  else:
    head = f"JAX / PyTorch, median (range), {n} alternations"
    lines = [f"| workload (img/s) | JAX | PyTorch | {head} |", "|---|---|---|---|"]
  for w, v in s.items():
    q, j, t = v["ratio"], v["jax_img_per_s"], v["torch_img_per_s"]
    sides = f"{1e3 / j:.3f} | {1e3 / t:.3f}" if ops else f"{j:,.0f} | {t:,.0f}"
    lines.append(f"| {w} | {sides} | {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) |")
  return "\n".join(lines)


def _run(cmd: list, timeout: float) -> str:
  p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                     check=False)
  if p.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: ...{p.stderr[-800:]}")
  return p.stdout


def run_jax(python: str, inner: int, quick: bool, timeout: float) -> dict:
  with tempfile.TemporaryDirectory(prefix="side_by_side_") as d:
    _run([python, "-m", "launch.speed", f"--workdir={d}", f"--repeats={inner}",
          *(["--quick"] if quick else [])], timeout)
    return json.loads((pathlib.Path(d) / SPEED_FILE).read_text())


def run_torch(python: str, inner: int, quick: bool, threads: int, timeout: float) -> dict:
  return parse_json_line(_run([python, str(BASELINE), f"--repeats={inner}",
                               f"--threads={threads}", *(["--quick"] if quick else [])],
                              timeout))


def run_jax_ops(python: str, inner: int, timeout: float) -> dict:
  return parse_json_line(_run([python, str(CONV_OPS), "--side=jax", f"--repeats={inner}"],
                              timeout))


def run_torch_ops(python: str, inner: int, threads: int, timeout: float) -> dict:
  return parse_json_line(_run([python, str(CONV_OPS), "--side=torch", f"--repeats={inner}",
                               f"--threads={threads}"], timeout))


def write_quick_train_split(python: str, path: pathlib.Path, timeout: float) -> dict:
  """Writes the train split of configs/cheater.py:quick as .npz (images, labels), for the
  baseline; returns that config's batch size and SGD learning rate, which the baseline trains
  with."""
  code = ("import json, sys, numpy as np; from configs import cheater; "
          "from ccmnist.data import splits; c = cheater.get_config('quick'); "
          "assert (c.loss.name, c.optim.name, c.optim.momentum) == ('erm', 'sgd', 0.0), c; "
          "t = splits.get_splits(c.data)['train']; "
          "np.savez(sys.argv[1], images=t['images'], labels=t['labels']); "
          "print(json.dumps({'batch': c.train.batch_size, 'lr': c.optim.lr}))")
  return parse_json_line(_run([python, "-c", code, str(path)], timeout))


def run_jax_epochs(python: str, epochs: int, timeout: float) -> dict:
  with tempfile.TemporaryDirectory(prefix="side_by_side_") as d:
    _run([python, "-m", "launch.train", "--config=configs/cheater.py:quick",
          f"--config.train.epochs={epochs}", f"--workdir={d}"], timeout)
    rates = jax_epoch_rates((pathlib.Path(d) / "metrics.jsonl").read_text())
  return {"epoch_img_per_s": rates}


def run_torch_epochs(python: str, npz: pathlib.Path, setting: dict, epochs: int, threads: int,
                     timeout: float) -> dict:
  """The baseline's epochs on npz at `setting` (write_quick_train_split's batch and lr)."""
  return parse_json_line(_run([python, str(BASELINE), f"--epoch_npz={npz}", f"--epochs={epochs}",
                               f"--batch={setting['batch']}", f"--lr={setting['lr']}",
                               f"--threads={threads}"], timeout))


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
  p.add_argument("--ops", action="store_true", help="Each conv op alone (conv_ops.py).")
  p.add_argument("--real_epoch", action="store_true",
                 help="launch.train epochs on configs/cheater.py:quick against the baseline's.")
  p.add_argument("--epochs", type=int, default=4, help="Epochs per process for --real_epoch.")
  a = p.parse_args(argv)
  a.torch_python = str(pathlib.Path(a.torch_python).expanduser())
  if a.repeats < 1 or a.inner_repeats < 1:
    p.error("--repeats and --inner_repeats must be at least 1.")
  if a.ops and a.real_epoch:
    p.error("--ops and --real_epoch are separate measurements; pass one of them.")
  if a.real_epoch and a.epochs < 2:
    p.error("--epochs must be at least 2: the first includes compiling.")
  if not pathlib.Path(a.torch_python).exists():
    p.error(f"--torch_python {a.torch_python} does not exist; create it as "
            "tools/README.md says.")
  load_start, t0 = os.getloadavg(), time.time()
  jax_raw, torch_raw = [], []
  with tempfile.TemporaryDirectory(prefix="side_by_side_split_") as split_dir:
    npz = pathlib.Path(split_dir) / "train.npz"
    setting = write_quick_train_split(a.jax_python, npz, a.timeout_s) if a.real_epoch else {}
    for r in range(a.repeats):
      if a.ops:
        jax_raw.append(run_jax_ops(a.jax_python, a.inner_repeats, a.timeout_s))
        torch_raw.append(run_torch_ops(a.torch_python, a.inner_repeats, a.threads, a.timeout_s))
      elif a.real_epoch:
        jax_raw.append(run_jax_epochs(a.jax_python, a.epochs, a.timeout_s))
        torch_raw.append(run_torch_epochs(a.torch_python, npz, setting, a.epochs, a.threads,
                                          a.timeout_s))
      else:
        jax_raw.append(run_jax(a.jax_python, a.inner_repeats, a.quick, a.timeout_s))
        torch_raw.append(run_torch(a.torch_python, a.inner_repeats, a.quick, a.threads,
                                   a.timeout_s))
      print(f"alternation {r + 1}/{a.repeats} done, {time.time() - t0:.0f} s", file=sys.stderr)
  load_end = os.getloadavg()
  jax_version = jax_raw[0].get("jax_version") or _run(
      [a.jax_python, "-c", "import jax; print(jax.__version__)"], a.timeout_s).strip()
  if a.ops:
    rates = [ops_per_s(x) for x in jax_raw], [ops_per_s(x) for x in torch_raw]
    s = summary(*rates, keys=tuple(rates[0][0]))
  elif a.real_epoch:
    s = summary([epoch_img_per_s(x["epoch_img_per_s"]) for x in jax_raw],
                [epoch_img_per_s(x["epoch_img_per_s"]) for x in torch_raw], keys=EPOCH_KEYS)
  else:
    s = summary([img_per_s(x) for x in jax_raw], [img_per_s(x) for x in torch_raw])
  print(format_table(s, n=a.repeats, ops=a.ops))
  print(f"\nload average (1, 5, 15 min): start {load_start}, end {load_end}; "
        f"{time.time() - t0:.0f} s; torch {torch_raw[0].get('torch_version')}, "
        f"jax {jax_version}")
  if a.json_out:
    out = pathlib.Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "load_start": load_start, "load_end": load_end,
                               "start_unix": t0, "summary": s, "jax": jax_raw,
                               "torch": torch_raw}, indent=1))


if __name__ == "__main__":
  main()
