"""Trains a config's replicas; writes DIR/{config.json, metrics.jsonl, checkpoints/, results.json}.

  python -m launch.train --config=configs/cheater.py --workdir=/tmp/ccmnist/cheater
  python -m launch.train --config=configs/cheater.py:quick --workdir=/tmp/ccmnist/cheater_quick
  python -m launch.train --config=configs/cheater.py --config.train.epochs=3 --workdir=DIR

Rerunning with the same --workdir resumes from the last checkpoint (a finished run is not redone).
Several processes (hosts) train one run: the same command in each, with --multihost and
--config.train.data_parallel=True (docs/multihost.md):

  python -m launch.train --multihost --coordinator_address=HOST0:PORT --num_processes=N \\
      --process_id=I --config=configs/cheater.py --config.train.data_parallel=True --workdir=DIR
"""

from absl import flags

from ccmnist.train import loop
from ccmnist.train import parallel
from launch import common

_CONFIG = common.define_config_file("config", "configs/cheater.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the run.", required=True)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Join a multi-process run (jax.distributed.initialize) first.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "With --multihost: host:port of process 0. Default: $JAX_COORDINATOR_ADDRESS or the cluster "
    "JAX detects (SLURM, Open MPI, Kubernetes, Cloud TPU).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --multihost: how many processes. Default: from the cluster.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --multihost: this process's index, 0 to num_processes - 1. "
    "Default: from the cluster.")
_CPU_COLLECTIVES = flags.DEFINE_enum(
    "cpu_collectives", None, ["gloo", "mpi"],
    "With --multihost on CPUs: the cross-process all-reduce. Default: JAX's (gloo).")

_PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id", "cpu_collectives")
flags.register_multi_flags_validator(
    ("multihost",) + _PROCESS_FLAGS,
    lambda v: v["multihost"] or all(v[k] is None for k in _PROCESS_FLAGS),
    message="--coordinator_address, --num_processes, --process_id and --cpu_collectives "
    "configure a multi-process run: add --multihost.")


def main(argv):
  del argv
  common.setup_logging()
  if _MULTIHOST.value:
    parallel.initialize(coordinator_address=_COORDINATOR.value,
                        num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                        cpu_collectives=_CPU_COLLECTIVES.value)
  loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
