"""Data-parallel training with jax.sharding: the batch split over a 'data' mesh axis.

Enabled by config.train.data_parallel. A 1-D Mesh over every device (all hosts' devices after
jax.distributed.initialize()); parameters, optimizer state and the resident training data are
replicated on every device; each step's example indices are split along the batch axis. The
step is written per device (shard_map): a device gathers and computes its share of the batch,
in passes of at most step.PASS_IMAGES images as on one device, and the gradients are averaged
over devices (pmean) before the update, so a step computes the same numbers as on one device
(up to the order of the float sums).

Arrays are built with jax.make_array_from_callback from a full host-side copy on every process,
which is what a multi-process run needs (every process computes the same init and orders).
"""

import functools

import jax
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
