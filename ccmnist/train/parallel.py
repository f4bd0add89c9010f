"""Data-parallel training with jax.sharding: the batch split over a 'data' mesh axis.

Enabled by config.train.data_parallel. A 1-D Mesh over every device (all hosts' devices after
jax.distributed.initialize()); parameters, optimizer state and the resident training data are
replicated on every device; each step's example indices, and so the gathered batch, are split
along the batch axis. XLA inserts the gradient all-reduce, so a step computes the same numbers
as on one device (up to the order of the float sums).

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


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """One replica's gathered batch [batch, ...]: split along the batch axis."""
  return NamedSharding(mesh, P(AXIS))


def put(tree, sharding: NamedSharding):
  """Every leaf of `tree` (host or device arrays, same values on every process) as a global
  array with `sharding`."""
  def one(x):
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
  return jax.tree_util.tree_map(one, tree)


def make_train_step(mesh: Mesh, **static):
  """step.make_train_step's program with shardings: (state, data, orders, lams) -> (state, m).

  state, data and lams replicated, orders split along the batch; the gathered batch is
  constrained to the same split inside the step. State donated, as in step.make_train_step.
  """
  step = functools.partial(step_lib.train_step, batch_sharding=batch_sharding(mesh), **static)
  rep = replicated(mesh)
  return jax.jit(jax.vmap(step, in_axes=(0, None, 0, 0)),
                 in_shardings=(rep, rep, orders_sharding(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def setup(config, state, train_data, lams, **static):
  """Data-parallel (train_fn, state, train_data, lams, place_orders) for `config`.

  `static` are make_train_step's settings; place_orders(orders) splits each epoch's orders.
  """
  mesh = make_mesh()
  check_batch_size(config.train.batch_size, mesh.size)
  rep = replicated(mesh)
  return (make_train_step(mesh, **static), put(state, rep), put(train_data, rep),
          put(lams, rep), functools.partial(put, sharding=orders_sharding(mesh)))
