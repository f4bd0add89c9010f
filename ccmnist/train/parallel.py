"""Data-parallel training with jax.sharding: the batch split over a 'data' mesh axis.

Enabled by config.train.data_parallel. A 1-D Mesh over every device (every process's devices
after `initialize`); parameters and optimizer state are replicated on every device. The step is
written per device (shard_map): a device computes its share of the batch, in passes as on one
device (step.num_passes), and the gradients are averaged over devices (pmean)
before the update, so a step computes the same numbers as on one device (up to the order of the
float sums).

One process (`setup`): the training data is resident on every device and each step's example
indices are split along the batch axis; a device gathers its share itself.
Several processes (`setup_processes`, when jax.process_count() > 1): every process holds the
data on the host and computes the same init and epoch orders; per step, each process gathers
only the rows its own devices compute and sends them there (`feed`), so no process holds
another's share. Replicated arrays are built with jax.make_array_from_callback from the host
copy every process has.
"""

import functools

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from ccmnist.train import step as step_lib

AXIS = "data"

# Most steps launched and not yet finished. XLA:CPU queues at most 32 programs per device; a
# launch that finds the queue full blocks a thread of the pool that also runs the programs. With
# more steps queued over 2 host devices on 2 cores, one device's step waited in its all-reduce for
# the other's share, which had no thread left to run on, until XLA's 40 s rendezvous timeout
# aborted the process. Dispatch stays asynchronous up to this depth.
MAX_STEPS_IN_FLIGHT = 8


class PeerError(RuntimeError):
  """Another process of this multi-process run failed; its own log says why."""


def initialize(*, coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, cpu_collectives: str | None = None) -> None:
  """Joins this process to a multi-process run (jax.distributed.initialize).

  Arguments left None come from the environment, as JAX finds them: JAX_COORDINATOR_ADDRESS,
  or a cluster it detects (SLURM, Open MPI, Kubernetes, Cloud TPU). cpu_collectives ('gloo' or
  'mpi', JAX's jax_cpu_collectives_implementation; None keeps JAX's default) carries the
  all-reduce between CPU processes. Call before anything else touches a device.
  """
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("Process %d of %d; %d of %d devices local.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def is_writer() -> bool:
  """Whether this process writes the run's files (other than checkpoints): process 0."""
  return jax.process_index() == 0


def same_on_all_processes(value, what: str):
  """`value`, after checking that every process holds the same (a collective: every process
  calls it at the same point). Raises RuntimeError on every process when they differ."""
  if jax.process_count() == 1:
    return value
  values = np.asarray(multihost_utils.process_allgather(np.asarray(value)))
  if not (values == values[0]).all():
    raise RuntimeError(
        f"The processes disagree on {what}: {values.tolist()} (process 0 first); every process "
        "must run the same command on a workdir in a filesystem they all share.")
  return value


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (AXIS,))


def check_batch_size(batch_size: int, num_devices: int) -> None:
  if batch_size % num_devices:
    raise ValueError(
        f"Data-parallel training splits each batch over {num_devices} devices, but "
        f"config.train.batch_size={batch_size} is not a multiple of {num_devices}; pick a "
        f"batch size divisible by {num_devices} or set config.train.data_parallel=False.")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def orders_sharding(mesh: Mesh) -> NamedSharding:
  """Epoch orders [K, steps, batch]: the batch axis split over 'data'."""
  return NamedSharding(mesh, P(None, None, AXIS))


def put(tree, sharding: NamedSharding):
  """Every leaf of `tree` (host or device arrays, same values on every process) as a global
  array with `sharding`."""
  def one(x):
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
  return jax.tree_util.tree_map(one, tree)


def make_train_step(mesh: Mesh, **static):
  """step.make_train_step's program over `mesh`: (state, data, orders, lams) -> (state, m).

  state, data and lams replicated, orders split along the batch; each device runs the
  replica-mapped step on its share. State donated, as in step.make_train_step.
  check_vma=False: gradients stay per device (with it, JAX would sum the gradients of the
  replicated params itself) and the step's pmean averages them.
  """
  step = functools.partial(step_lib.train_step, axis_name=AXIS, **static)
  per_device = jax.shard_map(step_lib.map_replicas(step, (0, None, 0, 0)), mesh=mesh,
                             in_specs=(P(), P(), P(None, None, AXIS), P()), out_specs=P(),
                             check_vma=False)
  rep = replicated(mesh)
  return jax.jit(per_device, in_shardings=(rep, rep, orders_sharding(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches [K, batch, ...]: the batch axis split over 'data'."""
  return NamedSharding(mesh, P(None, AXIS))


def make_batch_train_step(mesh: Mesh, **static):
  """step.batch_step's program over `mesh`: (state, batch, lams) -> (state, m).

  state and lams replicated, the batch [K, batch, ...] split along its batch axis (`feed`);
  otherwise as make_train_step.
  """
  step = functools.partial(step_lib.batch_step, axis_name=AXIS, **static)
  per_device = jax.shard_map(step_lib.map_replicas(step, (0, 0, 0)), mesh=mesh,
                             in_specs=(P(), P(None, AXIS), P()), out_specs=P(),
                             check_vma=False)
  rep = replicated(mesh)
  return jax.jit(per_device, in_shardings=(rep, batch_sharding(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def feed(split: dict, idx_KB: np.ndarray, sharding: NamedSharding, keys: tuple) -> dict:
  """The global batch {key: [K, batch, ...]} of rows idx_KB [K, batch] of the host arrays
  `split`: this process gathers only the rows of its own devices' shards and puts them there
  (make_array_from_callback asks for the addressable shards alone)."""
  def one(a):
    shape = idx_KB.shape + a.shape[1:]
    return jax.make_array_from_callback(shape, sharding, lambda index: a[idx_KB[index[:2]]])
  return {k: one(split[k]) for k in keys}


def local_copy(tree):
  """This process's copy of every fully replicated global array in `tree` (on its first
  local device): what host-side code and single-device programs of one process can use."""
  return jax.tree_util.tree_map(lambda x: x.addressable_data(0), tree)


def limit_in_flight(launched: list) -> None:
  """Waits for the step MAX_STEPS_IN_FLIGHT before the last in `launched` (any outputs of each
  step, in launch order), so that at most MAX_STEPS_IN_FLIGHT steps are queued."""
  if len(launched) > MAX_STEPS_IN_FLIGHT:
    jax.block_until_ready(launched[-MAX_STEPS_IN_FLIGHT - 1])


def setup(config, state, train_data, lams, **static):
  """Data-parallel (train_fn, state, train_data, lams, place_orders) for `config`.

  `static` are make_train_step's settings; place_orders(orders) splits each epoch's orders.
  """
  mesh = make_mesh()
  check_batch_size(config.train.batch_size, mesh.size)
  rep = replicated(mesh)
  return (make_train_step(mesh, **static), put(state, rep), put(train_data, rep),
          put(lams, rep), functools.partial(put, sharding=orders_sharding(mesh)))


def setup_processes(config, state, train_split: dict, lams, **static):
  """Multi-process data-parallel (step_fn, state): step_fn(state, orders, s) -> (state, m).

  train_split: the host arrays of the train split (every process has them); orders: the epoch's
  host-side [K, steps, batch] indices, the same on every process; s: the step within the epoch.
  `static` are make_train_step's settings.
  """
  mesh = make_mesh()
  check_batch_size(config.train.batch_size, mesh.size)
  rep = replicated(mesh)
  static = {k: v for k, v in static.items() if k != "steps_per_epoch"}
  fn = make_batch_train_step(mesh, **static)
  lams = put(lams, rep)
  sharding, keys = batch_sharding(mesh), static["method"].batch_keys
  step_fn = lambda state, orders, s: fn(state, feed(train_split, orders[:, s], sharding, keys),
                                        lams)
  return step_fn, put(state, rep)
