"""The CheaterCNN's conv ops one at a time, in JAX (ccmnist's own forms) or PyTorch; one JSON line.

  python tools/conv_ops.py --side=jax                                # ccmnist's environment
  ~/torch-venv/bin/python tools/conv_ops.py --side=torch --threads=2

A train step is made of these ops, so timing each alone on both sides says where a step's time
goes and which side's kernels are faster, apart from the runtime around them: for each of the
three convs, its forward pass (with bias), its input gradient and its kernel gradient, at the
batch sizes the workloads use (64: a pass of every train step; 256: PyTorch's batch-256 step,
which it runs in one pass; 1000: the eval batch, forward only). The JAX side runs exactly the
functions the model's default `s2d` conv runs (ccmnist/models/layers.py), each jitted alone with
its inputs as arguments; the PyTorch side runs F.conv2d and torch.nn.grad's conv2d_input and
conv2d_weight. Each op is called `calls` times back to back (JAX: queued, then waited for) and
the per-call median over interleaved repeats is reported, in ms. `side_by_side.py --ops`
alternates the two sides.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np

# (name, in channels, out channels, kernel, stride, padding, input size): the CheaterCNN's convs.
CONVS = (("conv0", 3, 8, 9, 2, 4, 28), ("conv1", 8, 16, 5, 2, 2, 14),
         ("conv2", 16, 16, 3, 1, 1, 7))
BATCHES = (64, 256, 1000)
KINDS = ("fwd", "dx", "dk")


def op_names(batches=BATCHES) -> list:
  """'<conv>_<kind>_b<batch>' for every op timed; at the eval batch (1000) forward only."""
  return [f"{c[0]}_{kind}_b{b}" for b in batches for c in CONVS for kind in KINDS
          if b != 1000 or kind == "fwd"]


def _shapes(conv, batch):
  _, cin, cout, k, s, p, size = conv
  out = (size + 2 * p - k) // s + 1
  return (batch, size, size, cin), (k, k, cin, cout), (batch, out, out, cout), s, p


def inputs(batches):
  """(batch, conv, x, kernel, dy) per conv and batch: NHWC / HWIO float32 numpy arrays in
  [0, 1), the same on both sides."""
  rng = np.random.default_rng(0)
  for b in batches:
    for conv in CONVS:
      x_shape, k_shape, y_shape, _, _ = _shapes(conv, b)
      yield (b, conv, *(rng.random(shape, dtype=np.float32)
                        for shape in (x_shape, k_shape, y_shape)))


def jax_ops(batches) -> tuple:
  """({name: zero-argument callable that runs the op once, asynchronously}, wait, versions)
  in JAX."""
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from ccmnist.models import layers  # pylint: disable=import-outside-toplevel
  ops = {}
  for b, conv, *arrays in inputs(batches):
    x_shape, k_shape, _, s, p = _shapes(conv, b)
    x, k, dy = (jnp.asarray(a) for a in arrays)
    bias = jnp.zeros((k_shape[-1],), jnp.float32)
    fns = {"fwd": (lambda x, k, bias, s=s, p=p: layers.conv2d(x, k, bias, stride=s, padding=p,
                                                             impl="s2d"), (x, k, bias)),
           "dx": (lambda dy, k, s=s, p=p, xs=x_shape: layers.phase_input_grad(dy, k, s, p, xs),
                  (dy, k)),
           "dk": (lambda x, dy, s=s, p=p, ks=k_shape: layers._kernel_grad(x, dy, ks, s, p),  # pylint: disable=protected-access
                  (x, dy))}
    for kind, (fn, args) in fns.items():
      name = f"{conv[0]}_{kind}_b{b}"
      if name in op_names(batches):
        compiled = jax.jit(fn).lower(*args).compile()
        ops[name] = lambda c=compiled, a=args: c(*a)
  return ops, jax.block_until_ready, {"jax_version": jax.__version__}


def torch_ops(batches, threads: int) -> tuple:
  """({name: zero-argument callable that runs the op once}, wait, versions) in PyTorch (NCHW)."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(threads)
  torch.set_grad_enabled(False)
  ops = {}
  nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
  for b, conv, x, k, dy in inputs(batches):
    _, k_shape, _, s, p = _shapes(conv, b)
    x, dy = nchw(x), nchw(dy)
    k = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))  # HWIO -> OIHW.
    bias = torch.zeros(k_shape[-1])
    fns = {"fwd": lambda x=x, k=k, bias=bias, s=s, p=p: F.conv2d(x, k, bias, s, p),
           "dx": lambda x=x, k=k, dy=dy, s=s, p=p: torch.nn.grad.conv2d_input(
               x.shape, k, dy, s, p),
           "dk": lambda x=x, k=k, dy=dy, s=s, p=p: torch.nn.grad.conv2d_weight(
               x, k.shape, dy, s, p)}
    for kind, fn in fns.items():
      name = f"{conv[0]}_{kind}_b{b}"
      if name in op_names(batches):
        ops[name] = fn
  return ops, lambda out: out, {"torch_version": torch.__version__}


def measure(ops: dict, wait, *, repeats: int, images: int) -> dict:
  """{name: median ms per call}: each op called back to back (images // batch calls, at least
  4) `repeats` times, the ops interleaved."""
  calls = {name: max(4, images // int(name.rsplit("_b", 1)[1])) for name in ops}
  for fn in ops.values():  # Warm-up.
    wait([fn() for _ in range(2)])
  times = {name: [] for name in ops}
  for _ in range(repeats):
    for name, fn in ops.items():
      t = time.perf_counter()
      wait([fn() for _ in range(calls[name])])
      times[name].append((time.perf_counter() - t) / calls[name] * 1e3)
  return {name: statistics.median(v) for name, v in times.items()}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--side", choices=("jax", "torch"), required=True)
  p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads.")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--images", type=int, default=4096,
                 help="Images per measurement of an op (calls = images // batch).")
  a = p.parse_args(argv)
  if a.repeats < 1 or a.images < 1:
    p.error("--repeats and --images must be at least 1.")
  ops, wait, versions = (jax_ops(BATCHES) if a.side == "jax" else
                        torch_ops(BATCHES, a.threads))
  print(json.dumps({"side": a.side, **versions, "repeats": a.repeats,
                    "ms": measure(ops, wait, repeats=a.repeats, images=a.images)}))


if __name__ == "__main__":
  main()
