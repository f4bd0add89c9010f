"""Runs the debiasing benchmark (resumable); writes DIR/benchmark.md and DIR/results.json.

  python -m launch.zoo --config=configs/zoo.py:quick --workdir=workdirs/bench_quick
  python -m launch.zoo --config=configs/zoo.py:full --workdir=workdirs/bench_full
  python -m launch.zoo --config=configs/zoo.py:full --workdir=DIR --share_workdir  # x N
  python -m launch.zoo --config=... --workdir=DIR --analyse_as_trained  # kept as it lands
"""

from absl import flags

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


def main(argv):
  del argv
  common.setup_logging()
  stages.run_zoo(_CONFIG.value, _WORKDIR.value, share=_SHARE.value,
                 command=common.command("launch.zoo"), analyse_as_trained=_AS_TRAINED.value)


if __name__ == "__main__":
  common.run(main)
