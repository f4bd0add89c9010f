"""Fixed-shape batches: any number of examples through one compiled shape."""

import jax
import numpy as np


def pad_rows(x, size: int):
  """x [m, ...] padded to [size, ...] with copies of its last row (values stay valid inputs)."""
  x = np.asarray(x)
  pad = size - x.shape[0]
  if pad < 0:
    raise ValueError(f"{x.shape[0]} rows do not fit a batch of {size}.")
  return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


def map_batches(fn, arrays, *, batch_size: int, axis: int = 0, with_index: bool = False):
  """fn over fixed-size batches of `arrays` (leading axis N, last batch padded), on the host.

  fn(*batch_arrays), or fn(batch_index, *batch_arrays) with with_index, returns a pytree whose
  `axis` is the example axis; the padded rows are dropped and the batches concatenated.
  """
  n = len(arrays[0])
  if n == 0:
    raise ValueError("map_batches needs at least one example.")
  outs = []
  for b, start in enumerate(range(0, n, batch_size)):
    m = min(batch_size, n - start)
    batch = [pad_rows(a[start:start + m], batch_size) for a in arrays]
    out = jax.device_get(fn(b, *batch) if with_index else fn(*batch))
    outs.append(jax.tree_util.tree_map(
        lambda v, m=m: np.take(np.asarray(v), np.arange(m), axis=axis), out))
  return jax.tree_util.tree_map(lambda *v: np.concatenate(v, axis=axis), *outs)
