"""Runs the debiasing benchmark (resumable); writes DIR/benchmark.md and DIR/results.json.

  python -m launch.zoo --config=configs/zoo.py:quick --workdir=workdirs/bench_quick
  python -m launch.zoo --config=configs/zoo.py:full --workdir=workdirs/bench_full
  python -m launch.zoo --config=configs/zoo.py:full --workdir=DIR --share_workdir  # x N
  python -m launch.zoo --config=... --workdir=DIR --keep=FOLDER  # resumable from FOLDER alone
"""

import functools
import json
import pathlib

from absl import flags
from absl import logging

from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import carry
from ccmnist.zoo import stages
from launch import common

_CONFIG = common.define_config_file("config", "configs/zoo.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the benchmark.",
                               required=True)
_SHARE = flags.DEFINE_bool(
    "share_workdir", False, "One of several processes (or hosts, over a shared file system) "
    "finishing one benchmark: each trains the runs no other holds; the last writes the report.")
_AS_TRAINED = flags.DEFINE_bool(
    "analyse_as_trained", False, "Analyse each method's run as soon as it and its family are "
    "trained, not after every run: the same results, for a workdir that may not outlive its "
    "machine (tools/carry_runs.py keeps the finished runs without their parameters).")
_KEEP = flags.DEFINE_string(
    "keep", None, "A folder that keeps the benchmark's finished runs without their parameters "
    "(ccmnist/zoo/carry.py): restored into --workdir first, written after every run and at the "
    "end, so that a later call on another machine resumes from it. Implies "
    "--analyse_as_trained.")


def main(argv):
  del argv
  common.setup_logging()
  bench, workdir, keep = _CONFIG.value, _WORKDIR.value, _KEEP.value
  after_run = None
  if keep:
    mine = json.loads(workdir_lib.config_json(bench))
    carry.check_config(mine, keep)
    carry.check_config(mine, workdir)  # Before either folder is written to.
    if (pathlib.Path(keep) / "config.json").exists():
      analyse = "analyse" in stages.selected_stages(bench)
      logging.info("[benchmark keep] restored from %s: %s", keep,
                   carry.as_json(carry.restore(keep, workdir, analyse=analyse)))
    after_run = functools.partial(carry.save, workdir, keep)
  stages.run_zoo(bench, workdir, share=_SHARE.value, command=common.command("launch.zoo"),
                 analyse_as_trained=_AS_TRAINED.value or bool(keep), after_run=after_run)
  if keep:
    carry.save(workdir, keep)


if __name__ == "__main__":
  common.run(main)
