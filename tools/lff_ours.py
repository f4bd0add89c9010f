"""One run of the benchmark's lff protocol, timed; prints one JSON line (tools/side_by_side.py
--lff's side of ours; tools/lff_pytorch.py is theirs).

  python tools/lff_ours.py --entry=lff --replicas=5 --epochs=2

The run is the one `python -m launch.zoo --config=configs/zoo.py:full` trains for (lff, lff_mlp,
--ratio, --entry), made by ccmnist.zoo.plan.run_config, with num_seeds = --replicas (erm's and
lff's lambda grids hold one point, so that many replicas) and the protocol's epochs cut to
--epochs; ccmnist.train.loop.train_and_evaluate trains it in a fresh temporary workdir with the
benchmark's persistent compilation cache, as launch.zoo's train stage would. Printed, per epoch:
metrics.jsonl's epoch_time_s and train_img_per_s (the training steps, their shuffle and batch
gathering included) and the epoch's whole wall time (its steps, evaluation of every split,
checkpoint and metrics writes: from one epoch's end to the next; the first from the call's start,
data and compiling included) and its time evaluating the train split, which the last epoch alone
does (once per run; timed as its own call, the other splits' evaluation unchanged).
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
ENTRIES = ("erm", "lff")


def _import_ccmnist():
  """ccmnist's modules this tool drives, from the repository this file lies in."""
  sys.path.insert(0, str(REPO))
  # pylint: disable=import-outside-toplevel
  import jax
  from ccmnist.train import loop, runs
  from ccmnist.util import compilation
  from ccmnist.zoo import plan
  from configs import zoo as zoo_config
  return dict(jax=jax, loop=loop, runs=runs, compilation=compilation, plan=plan,
              zoo_config=zoo_config)


def bench_config(zoo_config, *, replicas: int, epochs: int):
  """configs/zoo.py's full profile with `replicas` seeds, the lff protocol's epochs cut, and its
  held-out splits evaluated after every epoch (the benchmark's run evaluates after every fifth
  of its epochs: each measured epoch then holds one evaluation, so a whole epoch here bounds the
  run's from above)."""
  bench = zoo_config.build("full")
  bench.num_seeds = replicas
  bench.protocols.lff.train.epochs = epochs
  bench.protocols.lff.train.eval_every_epochs = 1
  return bench


def timed_run(loop, config, workdir) -> dict:
  """train_and_evaluate(config, workdir), with each epoch's end time (after its metrics row,
  checkpoint and summaries are written) from the call's start, and the time each epoch spent
  evaluating the train split (the last epoch alone does: once per run)."""
  ends, train_eval = [], []
  write_row, evaluate_all = loop.summaries.write_row, loop.evaluate_all
  t0 = time.perf_counter()

  def marking_write_row(tb, row):
    write_row(tb, row)
    ends.append(time.perf_counter() - t0)

  def timing_evaluate_all(eval_fn, params, evals, eval_batch_size):
    rest = {n: v for n, v in evals.items() if n != "train"}
    accuracy, preds = evaluate_all(eval_fn, params, rest, eval_batch_size)
    t = time.perf_counter()
    if "train" in evals:
      acc, pred = evaluate_all(eval_fn, params, {"train": evals["train"]}, eval_batch_size)
      accuracy, preds = {**accuracy, **acc}, {**preds, **pred}
    train_eval.append(time.perf_counter() - t)
    return accuracy, preds

  loop.summaries.write_row, loop.evaluate_all = marking_write_row, timing_evaluate_all
  try:
    loop.train_and_evaluate(config, workdir)
  finally:
    loop.summaries.write_row, loop.evaluate_all = write_row, evaluate_all
  total = time.perf_counter() - t0
  rows = [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text()
          .splitlines() if line.strip()]
  if not len(ends) == len(train_eval) == len(rows) == config.train.epochs:
    raise RuntimeError(f"{len(rows)} metrics rows, {len(ends)} epoch ends and {len(train_eval)} "
                       f"evaluations for {config.train.epochs} epochs; ccmnist.train.loop's "
                       "epoch loop changed.")
  walls = [b - a for a, b in zip([0.0] + ends[:-1], ends)]
  return {"epoch_wall_s": walls, "epoch_train_eval_s": train_eval,
          "epoch_time_s": [float(r["epoch_time_s"]) for r in rows],
          "train_img_per_s": [float(r["train_img_per_s"]) for r in rows], "total_s": total}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--entry", choices=ENTRIES, default="lff")
  p.add_argument("--replicas", type=int, default=5, help="num_seeds: replicas in one program.")
  p.add_argument("--epochs", type=int, default=2, help="Epochs measured.")
  p.add_argument("--ratio", type=float, default=0.01,
                 help="Bias-conflicting share of train (a ratio of the full profile).")
  p.add_argument("--compilation_cache", default=None,
                 help="XLA's persistent cache, as launch.zoo's flag ('' turns it off).")
  a = p.parse_args(argv)
  if a.replicas < 1 or a.epochs < 1:
    p.error("--replicas and --epochs must be at least 1.")
  m = _import_ccmnist()
  bench = bench_config(m["zoo_config"], replicas=a.replicas, epochs=a.epochs)
  if a.ratio not in tuple(bench.ratios):
    p.error(f"--ratio={a.ratio} is not a ratio of the full profile: {tuple(bench.ratios)}.")
  if a.compilation_cache != "":
    compilation = m["compilation"]
    compilation.use_cache(compilation.default_dir() if a.compilation_cache is None
                          else a.compilation_cache)
  run = m["plan"].Run("lff", "lff_mlp", a.ratio, a.entry)
  with tempfile.TemporaryDirectory(prefix="lff_ours_") as d:
    config = m["plan"].run_config(bench, run, d)
    k = len(m["runs"].replicas(config))
    if k != a.replicas:
      raise RuntimeError(f"{run.key} has {k} replicas, not --replicas={a.replicas}: its lambda "
                         "grid holds more than one point.")
    out = timed_run(m["loop"], config, pathlib.Path(d) / "run")
  model_epochs = m["zoo_config"].build("full").protocols.lff.train.epochs
  print(json.dumps({"entry": a.entry, "replicas": k, "train_size": config.data.train_size,
                    "batch": config.train.batch_size, "model_epochs": model_epochs,
                    "jax_version": m["jax"].__version__, **out}), flush=True)


if __name__ == "__main__":
  main()
