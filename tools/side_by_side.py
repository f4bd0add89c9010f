"""JAX (`python -m launch.speed`) against PyTorch (tools/pytorch_baseline.py), alternated.

  python tools/side_by_side.py --repeats=5 --torch_python=~/torch-venv/bin/python \
      --json_out=/tmp/ccmnist/side_by_side.json
  python tools/side_by_side.py --ops ...         # each conv op alone (conv_ops.py)
  python tools/side_by_side.py --real_epoch ...  # launch.train epochs on the quick config
  python tools/side_by_side.py --lff --replicas=5 ...  # the zoo's lff protocol vs LfF's loop

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

--lff alternates the debiasing benchmark's lff protocol with its authors' own training loop:
per method (erm against their train_vanilla.py, lff against their train.py), one run of ours
with --replicas replicas in one program (tools/lff_ours.py: the run launch.zoo's full profile
trains, epochs cut to --epochs), the same at 1 replica, and theirs, one model
(tools/lff_pytorch.py: their DataLoader, MLP, losses and evaluation cadence, on the same number
of training digits). Compared is seconds per trained model of 100 epochs, ours divided by its
replicas: whole runs (the first epoch as measured, with data and compiling, then 99 times the
median later epoch, evaluation and, ours, checkpoints included; our last epoch's train-split
evaluation counted once), and the training steps alone (100 x the median later epoch); with
each side's img/s. With --epochs=1 the one epoch stands for every epoch (compiling included).
The ratio theirs / ours splits exactly into replicas (ours at 1 replica / ours at K, per model)
times one model (theirs / ours at 1 replica); each factor's median and range are over
alternations.
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
LFF_OURS = REPO / "tools" / "lff_ours.py"
LFF_THEIRS = REPO / "tools" / "lff_pytorch.py"
# --lff: our benchmark entry -> the mode (their script) it is compared with.
LFF_PAIRS = (("erm", "vanilla"), ("lff", "lff"))
LFF_KEYS = ("s_per_model", "step_s_per_model")
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


def steady(values: list) -> float:
  """The median of the epochs after the first (compiling, warm-up), or the only epoch's."""
  if not values:
    raise ValueError("No epoch measured; --epochs must be at least 1.")
  return statistics.median(values[1:]) if len(values) > 1 else values[0]


def model_seconds(first: float, steady_epoch: float, epochs: int, once: float = 0.0) -> float:
  """Seconds of a run of `epochs` epochs: its measured first epoch (data, compiling, warm-up),
  then steady epochs, plus what the run does once (`once`)."""
  return first + (epochs - 1) * steady_epoch + once


def ours_lff_times(raw: dict) -> dict:
  """Per trained model of raw['model_epochs'] epochs (one of raw['replicas']): whole seconds
  (first epoch, later epochs without the last epoch's train-split evaluation, which is added
  once), training-step seconds, and img/s over all replicas; from tools/lff_ours.py's line."""
  k, n = raw["replicas"], raw["model_epochs"]
  walls = [w - t for w, t in zip(raw["epoch_wall_s"], raw["epoch_train_eval_s"])]
  whole = model_seconds(walls[0], steady(walls), n, once=sum(raw["epoch_train_eval_s"]))
  return {"s_per_model": whole / k, "step_s_per_model": n * steady(raw["epoch_time_s"]) / k,
          "img_per_s": steady(raw["train_img_per_s"])}


def theirs_lff_times(raw: dict) -> dict:
  """The same from tools/lff_pytorch.py's JSON line (one model): its training steps are the
  data loading and the step, as ours count their shuffle and batch gathering."""
  n, epochs = raw["model_epochs"], raw["epochs"]
  walls = [e["wall_s"] for e in epochs]
  train_s = [e["data_s"] + e["step_s"] for e in epochs]
  return {"s_per_model": model_seconds(walls[0], steady(walls), n),
          "step_s_per_model": n * steady(train_s),
          "img_per_s": steady([e["images"] / t for e, t in zip(epochs, train_s)])}


def lff_factors(ours_k: list, ours_1: list, theirs: list, key: str) -> dict:
  """Per alternation, from paired lists of *_lff_times dicts: 'ratio' theirs / ours (seconds
  per model; above 1: ours faster) = 'replicas' (ours at 1 replica / ours at K) x 'one_model'
  (theirs / ours at 1 replica)."""
  if not len(ours_k) == len(ours_1) == len(theirs):
    raise ValueError(f"{len(ours_k)}, {len(ours_1)} and {len(theirs)} runs (ours at K, ours at "
                     "1, theirs); they pair by alternation.")
  return {"ratio": [t[key] / o[key] for o, t in zip(ours_k, theirs)],
          "replicas": [o1[key] / o[key] for o, o1 in zip(ours_k, ours_1)],
          "one_model": [t[key] / o1[key] for o1, t in zip(ours_1, theirs)]}


def lff_summary(ours_k: list, ours_1: list, theirs: list) -> dict:
  """Per LFF_KEYS: each side's median seconds per model and the median and range of each factor
  of lff_factors; plus each side's median img/s."""
  med = lambda runs, key: statistics.median(r[key] for r in runs)
  out = {key: {"ours": med(ours_k, key), "ours_1": med(ours_1, key), "theirs": med(theirs, key),
               **{f: summarize(v) for f, v in lff_factors(ours_k, ours_1, theirs, key).items()}}
         for key in LFF_KEYS}
  out["img_per_s"] = {"ours": med(ours_k, "img_per_s"), "ours_1": med(ours_1, "img_per_s"),
                      "theirs": med(theirs, "img_per_s")}
  return out


def format_lff_table(s: dict, *, n: int, replicas: int) -> str:
  """A Markdown table of {method: lff_summary} over `n` alternations."""
  q = lambda v: f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"
  lines = [f"| method (ours / theirs), s per 100-epoch model | ours, K={replicas} | ours, K=1 | "
           f"theirs | theirs / ours, median (range), {n} alternations | from replicas (ours "
           "K=1 / K) | from one model (theirs / ours K=1) |", "|---|---|---|---|---|---|---|"]
  for method, v in s.items():
    for key, what in (("s_per_model", "whole epochs"), ("step_s_per_model", "training steps")):
      r = v[key]
      lines.append(f"| {method}, {what} | {r['ours']:,.0f} | {r['ours_1']:,.0f} | "
                   f"{r['theirs']:,.0f} | {q(r['ratio'])} | {q(r['replicas'])} | "
                   f"{q(r['one_model'])} |")
  lines += ["", f"| method, training img/s | ours, K={replicas} (all replicas) | ours, K=1 | "
            "theirs |", "|---|---|---|---|"]
  for method, v in s.items():
    i = v["img_per_s"]
    lines.append(f"| {method} | {i['ours']:,.0f} | {i['ours_1']:,.0f} | {i['theirs']:,.0f} |")
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


def run_ours_lff(python: str, entry: str, replicas: int, epochs: int, timeout: float) -> dict:
  return parse_json_line(_run([python, str(LFF_OURS), f"--entry={entry}",
                               f"--replicas={replicas}", f"--epochs={epochs}"], timeout))


def run_theirs_lff(python: str, mode: str, epochs: int, train_size: int, threads: int,
                   num_workers: int, timeout: float) -> dict:
  return parse_json_line(_run([python, str(LFF_THEIRS), f"--mode={mode}", f"--epochs={epochs}",
                               f"--train_size={train_size}", f"--threads={threads}",
                               f"--num_workers={num_workers}"], timeout))


def lff_alternation(a) -> dict:
  """One alternation of --lff: {entry: (ours at K, ours at 1, theirs)} raw JSON lines."""
  out = {}
  for entry, mode in LFF_PAIRS:
    ours = run_ours_lff(a.jax_python, entry, a.replicas, a.epochs, a.timeout_s)
    ours_1 = (ours if a.replicas == 1 else
              run_ours_lff(a.jax_python, entry, 1, a.epochs, a.timeout_s))
    theirs = run_theirs_lff(a.torch_python, mode, a.epochs, ours["train_size"], a.threads,
                            a.num_workers, a.timeout_s)
    out[entry] = (ours, ours_1, theirs)
  return out


def main_lff(a, load_start, t0):
  """--lff: alternations, the table, the JSON."""
  raw = []
  for r in range(a.repeats):
    raw.append(lff_alternation(a))
    print(f"alternation {r + 1}/{a.repeats} done, {time.time() - t0:.0f} s", file=sys.stderr)
  load_end = os.getloadavg()
  s = {f"{entry} / {mode}": lff_summary([ours_lff_times(x[entry][0]) for x in raw],
                                        [ours_lff_times(x[entry][1]) for x in raw],
                                        [theirs_lff_times(x[entry][2]) for x in raw])
       for entry, mode in LFF_PAIRS}
  first = raw[0][LFF_PAIRS[0][0]]
  print(format_lff_table(s, n=a.repeats, replicas=a.replicas))
  print(f"\n{a.epochs} epoch(s) per process, {first[0]['train_size']} training digits; theirs: "
        f"{first[2]['num_workers']} DataLoader workers, {first[2]['threads']} threads, "
        f"{first[2]['data']} digits. load average (1, 5, 15 min): start {load_start}, end "
        f"{load_end}; {time.time() - t0:.0f} s; torch {first[2]['torch_version']}, "
        f"jax {first[0]['jax_version']}")
  write_json_out(a, {"load_start": load_start, "load_end": load_end, "start_unix": t0,
                     "summary": s, "raw": raw})


def write_json_out(a, record: dict) -> None:
  """Every measurement, with the arguments, to --json_out (when given)."""
  if a.json_out:
    out = pathlib.Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), **record}, indent=1))


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
  p.add_argument("--lff", action="store_true",
                 help="The zoo's lff protocol (erm, lff) against LfF's own PyTorch loop.")
  p.add_argument("--replicas", type=int, default=5, help="--lff: our replicas in one program.")
  p.add_argument("--num_workers", type=int, default=16,
                 help="--lff: their DataLoader workers (their code: 16).")
  p.add_argument("--epochs", type=int, default=None,
                 help="Epochs per process: --real_epoch 4 by default, --lff 2.")
  a = p.parse_args(argv)
  if a.epochs is None:
    a.epochs = 2 if a.lff else 4
  a.torch_python = str(pathlib.Path(a.torch_python).expanduser())
  if a.repeats < 1 or a.inner_repeats < 1:
    p.error("--repeats and --inner_repeats must be at least 1.")
  if a.ops + a.real_epoch + a.lff > 1:
    p.error("--ops, --real_epoch and --lff are separate measurements; pass one of them.")
  if a.lff and (a.epochs < 1 or a.replicas < 1 or a.num_workers < 0):
    p.error("--lff needs --epochs and --replicas of at least 1 and --num_workers >= 0.")
  if a.real_epoch and a.epochs < 2:
    p.error("--epochs must be at least 2: the first includes compiling.")
  if not pathlib.Path(a.torch_python).exists():
    p.error(f"--torch_python {a.torch_python} does not exist; create it as "
            "tools/README.md says.")
  load_start, t0 = os.getloadavg(), time.time()
  if a.lff:
    main_lff(a, load_start, t0)
    return
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
  write_json_out(a, {"load_start": load_start, "load_end": load_end, "start_unix": t0,
                     "summary": s, "jax": jax_raw, "torch": torch_raw})


if __name__ == "__main__":
  main()
