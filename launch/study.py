"""Runs the whole study (resumable); writes DIR/report.md and DIR/results.json.

  python -m launch.study --config=configs/study.py:quick --workdir=workdirs/study_quick
"""

from absl import flags

from ccmnist import study
from launch import common

_CONFIG = common.define_config_file("config", "configs/study.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the study.", required=True)


def main(argv):
  del argv
  common.setup_logging()
  study.run_study(_CONFIG.value, _WORKDIR.value, command=common.command("launch.study"))


if __name__ == "__main__":
  common.run(main)
