"""Runs the debiasing benchmark (resumable); writes DIR/benchmark.md and DIR/results.json.

  python -m launch.zoo --config=configs/zoo.py:quick --workdir=workdirs/bench_quick
  python -m launch.zoo --config=configs/zoo.py:full --workdir=workdirs/bench_full
  python -m launch.zoo --config=configs/zoo.py:full --workdir=DIR --share_workdir  # x N
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


def main(argv):
  del argv
  common.setup_logging()
  stages.run_zoo(_CONFIG.value, _WORKDIR.value, share=_SHARE.value,
                 command=common.command("launch.zoo"))


if __name__ == "__main__":
  common.run(main)
