"""Runs the debiasing benchmark (resumable); writes DIR/benchmark.md and DIR/results.json.

  python -m launch.zoo --config=configs/zoo.py:quick --workdir=workdirs/bench_quick
  python -m launch.zoo --config=configs/zoo.py:full --workdir=workdirs/bench_full
"""

from absl import flags

from ccmnist.zoo import stages
from launch import common

_CONFIG = common.define_config_file("config", "configs/zoo.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the benchmark.",
                               required=True)
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs in DIR/compilation_cache, so a program "
    "compiled for one ratio (or before a restart) is not compiled again.")


def main(argv):
  del argv
  common.setup_logging()
  stages.run_zoo(_CONFIG.value, _WORKDIR.value, compilation_cache=_COMPILATION_CACHE.value)


if __name__ == "__main__":
  common.run(main)
