"""Speed benchmark on whatever device JAX sees; writes DIR/speed.json and prints a table.

  python -m launch.speed --workdir=/tmp/ccmnist/speed
  python -m launch.speed --workdir=/tmp/ccmnist/speed_quick --quick
  python -m launch.speed --workdir=/tmp/ccmnist/speed_lax --conv_impl=lax
  python -m launch.speed --workdir=/tmp/ccmnist/speed_scan --mlp_replica_map=scan \
    --mlp_pass_images=64
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
    python -m launch.speed --workdir=/tmp/ccmnist/speed_dp2 --data_parallel
"""

import pathlib

from absl import flags

from ccmnist import speed
from ccmnist.models import layers
from ccmnist.train import step as step_lib
from ccmnist.util import io
from ccmnist.zoo import plan
from configs import common as config_common
from configs import zoo as zoo_config
from launch import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats; medians are reported.")
_QUICK = flags.DEFINE_bool("quick", False, "Fewer steps and 7k digits to color (noisier).")
_DATA_PARALLEL = flags.DEFINE_bool(
    "data_parallel", False, "Train workloads split each batch over every device, as "
    "--config.train.data_parallel=True does.")
_CONV_IMPL = flags.DEFINE_enum(
    "conv_impl", "", ["", *layers.CONV_IMPLS],
    "Conv implementation of every model benchmarked; '' keeps the training config's.")
_MLP_REPLICA_MAP = flags.DEFINE_enum(
    "mlp_replica_map", "", ["", *step_lib.REPLICA_MAPS],
    "How the MLP steps map their replicas (train/step.py REPLICA_MAP); '' picks by model.")
_MLP_PASS_IMAGES = flags.DEFINE_integer(
    "mlp_pass_images", -1, "Most images per pass of the MLP steps (train/step.py PASS_IMAGES; "
    "0: the whole batch); -1 picks by model.")
_MLP_REPLICAS = flags.DEFINE_integer(
    "mlp_replicas", 5, "Replicas (seeds) of the benchmark's MLP steps timed (the lff protocol's "
    "erm and lff, as configs/zoo.py:full trains them); 0: not timed.")


def mlp_configs(replicas: int) -> dict:
  """The lff protocol's erm and lff runs of configs/zoo.py:full at 1%, with `replicas` seeds."""
  bench = zoo_config.get_config("full")
  out = {}
  for loss in ("erm", "lff") if replicas > 0 else ():
    c = plan.run_config(bench, plan.Run("lff", "lff_mlp", 0.01, loss), "/nonexistent")
    with c.unlocked():
      c.num_seeds, c.loss.lam_grid = replicas, (c.loss.lam,)
    out[f"lff_{loss}_b{c.train.batch_size}"] = c
  return out


def main(argv):
  del argv
  common.setup_logging()
  kw = (dict(train_images=1280, pgd_steps=30, coloring_n=7_000, k8_steps=5, mlp_images=12_800)
        if _QUICK.value else {})
  results = speed.run_speed(config_common.train_config(), repeats=_REPEATS.value,
                            data_parallel=_DATA_PARALLEL.value,
                            conv_impl=_CONV_IMPL.value or None,
                            mlp_configs=mlp_configs(_MLP_REPLICAS.value),
                            mlp_layout=(_MLP_REPLICA_MAP.value or None,
                                        None if _MLP_PASS_IMAGES.value < 0
                                        else _MLP_PASS_IMAGES.value), **kw)
  io.write_json(pathlib.Path(_WORKDIR.value) / "speed.json", results)
  print(speed.format_table(results))


if __name__ == "__main__":
  common.run(main)
