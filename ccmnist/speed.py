"""Speed and scale benchmark: run_speed(base_config, ...) -> dict, format_table(dict) -> str.

base_config is a training config (configs/common.py's train_config()); every workload is it
with the loss, batch size and replica count set, and conv_impl, when given, replacing its
model.conv_impl. Measures on whatever device JAX sees, with the project's real programs:
  * training img/s per loss and batch size: step.make_train_step with K=1 replica, data resident
    on device, compile time reported separately; images counted as base training images (a
    consistency step also runs the counterfactual batch, which is not counted);
  * eval img/s (step.make_eval_step), PGD img/s at the study's setting (Linf eps 12.75, step
    1.5, 30 steps, targeted, batch 200), and the 6-epsilon sweep's time over one epsilon's
    (attacks.sweep.sweep against one call of the same attacks.pgd.Attack);
  * coloring time for 70k digits (MNIST if cached, else random MNIST-shaped digits);
  * achieved FLOP/s: XLA's cost analysis of the compiled train step (flops per step) over the
    measured step time, against a peak estimated by a large float32 matmul timed in the same run
    (a measured, not a datasheet, peak: on CPU that is what this process can get);
  * K=8 vmapped replicas (num_seeds=8 through the real train step) against 8 sequential
    single-replica runs of the same number of steps;
  * the benchmark's MLP steps (`mlp_configs`: name -> a zoo run's training config, e.g. the lff
    protocol's erm and lff with 5 replicas): img/s over all replicas, achieved FLOP/s and its
    share of the matmul peak.
Workloads are measured interleaved (repeat r of every workload before repeat r + 1) and each
reports the median over repeats, so a load change on a shared machine hits all alike.
"""

import copy
import statistics
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ccmnist import models
from ccmnist.attacks import pgd as pgd_lib
from ccmnist.attacks import sweep as sweep_lib
from ccmnist.data import coloring
from ccmnist.data import mnist
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.models import layers
from ccmnist.train import loop
from ccmnist.train import optim
from ccmnist.train import parallel
from ccmnist.train import runs
from ccmnist.train import step as step_lib

LOSSES = ("erm", "gradient_penalty", "consistency")
BATCH_SIZES = (64, 256)
SWEEP_EPSILONS = (5.0, 7.5, 10.0, 12.75, 15.0, 20.0)
PGD = dict(eps=12.75, step_size=1.5, steps=30, batch=200)


def workload_config(base_config, loss: str, batch: int, num_seeds: int = 1):
  """A copy of base_config training `loss` (lam 0.1) at `batch` with `num_seeds` replicas."""
  c = copy.deepcopy(base_config)
  c.loss.name, c.loss.lam, c.train.batch_size, c.num_seeds = loss, 0.1, batch, num_seeds
  return c


def _cost_flops(compiled) -> float:
  """flops of one call of a compiled program, from XLA's cost analysis (nan if unavailable)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # Not every backend implements it.
    return float("nan")
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


class TrainWorkload:
  """`steps` steps of the real train step of `config` (see workload_config); call() times them."""

  def __init__(self, config, *, data, steps, data_parallel=False):
    model = runs.model_of(config)  # LfF's pair for lff, as training makes it.
    n, batch = data["labels"].shape[0], config.train.batch_size
    self.steps, self.batch, self.data, self.data_parallel = steps, batch, data, data_parallel
    reps = runs.replicas(config)
    self.spe = n // batch
    tx = optim.make_optimizer(config.optim, 10 * self.spe)
    extra = runs.init_extra(config, {k: np.asarray(v) for k, v in data.items()})
    self.state = runs.init_state(config, model, tx, extra)
    self.orders = loop.epoch_orders(config, 1, n, self.spe)
    self.lams = jnp.asarray([r["lam"] for r in reps], jnp.float32)
    static = runs.step_kwargs(config, model, self.spe)
    self.layout = {"replica_map": step_lib.replica_map_of(model, static["method"]),
                   "passes": step_lib.step_passes(static["method"], batch, model)}
    if data_parallel:  # The batch split over every device, as --config.train.data_parallel.
      self.fn, self.state, self.data, self.lams, place = parallel.setup(
          config, self.state, data, self.lams, **static)
      self.orders = place(self.orders)
    else:
      self.fn = step_lib.make_train_step(**static)
    t = time.perf_counter()
    self.fn = self.fn.lower(self.state, self.data, self.orders, self.lams).compile()
    self.compile_s = time.perf_counter() - t
    # An SPMD program's cost analysis counts one device's share.
    self.flops_per_step = _cost_flops(self.fn) * (jax.device_count() if data_parallel else 1)
    if not data_parallel and self.layout["replica_map"] == "scan":
      self.flops_per_step *= len(self.lams)  # XLA counts a loop's body once.
    self.call()  # Warm-up.

  def call(self, steps: int | None = None) -> float:
    t, launched = time.perf_counter(), []
    for _ in range(self.steps if steps is None else steps):
      self.state, m = self.fn(self.state, self.data, self.orders, self.lams)
      if self.data_parallel:  # As the train loop does.
        launched.append(m)
        parallel.limit_in_flight(launched)
    jax.block_until_ready((self.state, m))
    return time.perf_counter() - t


def _timed(fn) -> float:
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def _grey_digits(n: int) -> tuple:
  """n grey digits: MNIST train + test when cached locally, else random MNIST-shaped ones."""
  try:
    tr, _ = mnist.load("train", use_tfds=False, use_mirror=False)
    te, _ = mnist.load("test", use_tfds=False, use_mirror=False)
    grey, source = np.concatenate([tr, te]), "mnist"
  except Exception:  # pylint: disable=broad-except  # Any missing source: fall back.
    grey, source = np.zeros((0, *mnist.IMAGE_SHAPE), np.uint8), "random"
  if len(grey) < n:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (n, *mnist.IMAGE_SHAPE), dtype=np.uint8)
    source = "random"
  return grey[:n], source


def workload_names(losses=LOSSES, batch_sizes=BATCH_SIZES) -> list:
  """Keys of train_img_per_s: '<loss>_b<batch>'."""
  return [f"{loss}_b{b}" for loss in losses for b in batch_sizes]


def device_info() -> dict:
  d = jax.devices()[0]
  return {"platform": d.platform, "kind": d.device_kind, "count": jax.device_count(),
          "description": f"{jax.device_count()} x {d.platform}:{d.device_kind}"}


def run_speed(base_config, *, repeats: int = 3, train_images: int = 5120,
                  batch_sizes=BATCH_SIZES, losses=LOSSES, pgd_steps: int = PGD["steps"],
                  coloring_n: int = 70_000, eval_batches: int = 5, k8_steps: int = 10,
                  matmul_n: int = 2048, data_parallel: bool = False,
                  conv_impl: str | None = None, mlp_configs: dict | None = None,
                  mlp_images: int = 51_200, mlp_layout: tuple = (None, None)) -> dict:
  """Runs every workload `repeats` times, interleaved; returns speed.json's dict (medians).

  base_config: the training config every workload derives from (workload_config).
  data_parallel: the training workloads split each batch over every device (train/parallel.py).
  conv_impl: one of models.layers.CONV_IMPLS for every model here; None or '' keeps
  base_config.model.conv_impl.
  mlp_configs: name -> training config of an MLP run to time as it trains (its replicas, batch
  and method), on `mlp_images` images (over all replicas) per repeat; None: none.
  mlp_layout: (replica map, pass images) of the MLP steps (train/step.py REPLICA_MAP and
  PASS_IMAGES; None picks by model), to time a layout against the default.
  """
  if conv_impl and conv_impl not in layers.CONV_IMPLS:
    raise ValueError(f"Unknown conv_impl {conv_impl!r}; use one of {layers.CONV_IMPLS}.")
  base = copy.deepcopy(base_config)
  if conv_impl:
    base.model.conv_impl = conv_impl
  rng = np.random.default_rng(0)
  n_data = max(4096, 4 * max(batch_sizes))
  spec = splits_lib.spec(base.data)
  data = {"images": jnp.asarray(rng.integers(0, 256, (n_data, *spec.image_shape), dtype=np.uint8)),
          "labels": jnp.asarray(rng.integers(0, spec.num_classes, n_data).astype(np.int32)),
          "cf_images": jnp.asarray(rng.integers(0, 256, (n_data, *spec.image_shape),
                                                dtype=np.uint8))}

  def workload(loss, batch, steps, *, num_seeds=1, data_parallel=False):
    return TrainWorkload(workload_config(base, loss, batch, num_seeds), data=data, steps=steps,
                         data_parallel=data_parallel)

  logging.info("Compiling the train steps.")
  # The same number of images per measurement at every batch size, enough for stable medians.
  train = {name: workload(loss, b, max(1, train_images // b), data_parallel=data_parallel)
           for name, (loss, b) in zip(workload_names(losses, batch_sizes),
                                      [(loss, b) for loss in losses for b in batch_sizes])}
  k8 = workload("erm", 64, k8_steps, num_seeds=8)
  with step_lib.layout(*mlp_layout):  # The steps are traced and compiled here.
    mlp = {name: TrainWorkload(c, data=data, steps=max(
        1, mlp_images // (c.train.batch_size * len(runs.replicas(c)))))
           for name, c in (mlp_configs or {}).items()}
  # One device for K=8 vs 8 runs, eval and PGD (their arrays, and so their programs, on one).
  k1 = (None if data_parallel else train.get("erm_b64")) or workload("erm", 64, k8_steps)

  model = models.get_model(base.model.name, num_classes=spec.num_classes,
                           conv_impl=base.model.conv_impl)
  params = jax.tree_util.tree_map(lambda x: x[0], k1.state.params)
  eval_b = 1000
  eval_fn = step_lib.make_eval_step(model=model)
  ev_images = jnp.asarray(rng.integers(0, 256, (eval_b, *spec.image_shape), dtype=np.uint8))
  ev_labels = jnp.asarray(rng.integers(0, spec.num_classes, eval_b).astype(np.int32))
  ev_mask = jnp.ones((eval_b,), bool)

  def eval_call():
    return [eval_fn(k1.state.params, ev_images, ev_labels, ev_mask) for _ in range(eval_batches)]

  pgd_images = data["images"][:PGD["batch"]].astype(jnp.float32)
  targets = jnp.full((PGD["batch"],), 3, jnp.int32)
  key = jax.random.key(0)
  attack = pgd_lib.Attack(eps=PGD["eps"], step_size=PGD["step_size"], steps=pgd_steps,
                          targeted=True)
  pgd_call = lambda: attack(model, params, pgd_images, targets, key)
  sweep_call = lambda: sweep_lib.sweep(attack, model, params, pgd_images, targets,
                                       SWEEP_EPSILONS, key)

  grey, grey_source = _grey_digits(coloring_n)
  colors = rng.integers(0, len(palette_lib.PALETTE_RGB), len(grey))
  coloring.noise_table(0.02)  # Built once per process, not part of the per-call cost.
  color_call = lambda: coloring.colorize_foreground(grey, colors, np.random.default_rng(0))

  mat = jax.random.normal(jax.random.key(1), (matmul_n, matmul_n), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)

  once = {}
  for name, fn in (("eval", eval_call), ("pgd", pgd_call), ("sweep", sweep_call),
                   ("coloring", color_call), ("matmul", lambda: matmul(mat))):
    once[name] = _timed(fn)  # First call: compile + run.

  times = {name: [] for name in (*train, *mlp, "k8", "k1_x8", "eval", "pgd", "sweep",
                                 "coloring", "matmul")}
  for r in range(repeats):
    logging.info("Repeat %d/%d.", r + 1, repeats)
    for name, w in {**train, **mlp}.items():
      times[name].append(w.call())
    times["k8"].append(k8.call(k8_steps))
    times["k1_x8"].append(sum(k1.call(k8_steps) for _ in range(8)))  # 8 runs in a row.
    times["eval"].append(_timed(eval_call))
    times["pgd"].append(_timed(pgd_call))
    times["sweep"].append(_timed(sweep_call))
    times["coloring"].append(_timed(color_call))
    times["matmul"].append(min(_timed(lambda: matmul(mat)) for _ in range(3)))
  med = {k: statistics.median(v) for k, v in times.items()}

  peak = 2.0 * matmul_n ** 3 / med["matmul"]
  train_ips = {k: w.steps * w.batch / med[k] for k, w in train.items()}
  flops = {k: w.flops_per_step * w.steps / med[k] for k, w in train.items()}
  mlp_flops = {k: w.flops_per_step * w.steps / med[k] for k, w in mlp.items()}
  return {
      "device": device_info(),
      "train_data_parallel": data_parallel,
      "conv_impl": model.conv_impl,
      "jax_version": jax.__version__,
      "repeats": repeats,
      "train_img_per_s": train_ips,
      "train_compile_s": {k: w.compile_s for k, w in train.items()},
      "train_steps_per_repeat": {k: w.steps for k, w in train.items()},
      "train_flops_per_step": {k: w.flops_per_step for k, w in train.items()},
      "train_achieved_flop_per_s": flops,
      "peak_flop_per_s": peak,
      "peak_flop_per_s_method": (f"float32 {matmul_n}x{matmul_n} matmul (jit, best of 3 per "
                                 "repeat, median over repeats), measured in this run"),
      "train_fraction_of_peak": {k: v / peak for k, v in flops.items()},
      "eval_img_per_s": eval_batches * eval_b / med["eval"],
      "eval_first_call_s": once["eval"],
      "pgd_img_per_s": PGD["batch"] / med["pgd"],
      "pgd_setting": {**PGD, "steps": pgd_steps, "norm": "linf", "targeted": True},
      "pgd_first_call_s": once["pgd"],
      "sweep_epsilons": list(SWEEP_EPSILONS),
      "sweep_over_single_eps": med["sweep"] / med["pgd"],
      "sweep_first_call_s": once["sweep"],
      "coloring_s_70k": med["coloring"] * 70_000 / len(grey),
      "coloring_first_call_s": once["coloring"],
      "coloring_digits_measured": len(grey),
      "coloring_source": grey_source,
      "k8_vmapped_s": med["k8"],
      "k8_sequential_s": med["k1_x8"],
      "k8_sequential_over_vmapped": med["k1_x8"] / med["k8"],
      "k8_steps": k8_steps,
      "mlp_replicas": {k: len(w.lams) for k, w in mlp.items()},
      "mlp_img_per_s": {k: w.steps * w.batch * len(w.lams) / med[k] for k, w in mlp.items()},
      "mlp_compile_s": {k: w.compile_s for k, w in mlp.items()},
      "mlp_layout": {k: w.layout for k, w in mlp.items()},
      "mlp_flops_per_step": {k: w.flops_per_step for k, w in mlp.items()},
      "mlp_achieved_flop_per_s": mlp_flops,
      "mlp_fraction_of_peak": {k: v / peak for k, v in mlp_flops.items()},
      "times_s": times,
  }


def format_table(r: dict) -> str:
  """A plain-text table of run_speed's results."""
  rows = [("device", r["device"]["description"]),
          ("train", "data-parallel over every device" if r.get("train_data_parallel")
           else "one device"), ("conv impl", r.get("conv_impl", "")), ("", "")]
  for k, v in r["train_img_per_s"].items():
    rows.append((f"train {k}", f"{v:9.0f} img/s   compile {r['train_compile_s'][k]:5.1f} s   "
                               f"{r['train_achieved_flop_per_s'][k] / 1e9:7.2f} GFLOP/s "
                               f"({100 * r['train_fraction_of_peak'][k]:.1f}% of peak)"))
  rows += [
      ("peak (matmul)", f"{r['peak_flop_per_s'] / 1e9:9.1f} GFLOP/s"),
      ("eval", f"{r['eval_img_per_s']:9.0f} img/s"),
      ("PGD (Linf 12.75, 30 steps, b200)", f"{r['pgd_img_per_s']:9.1f} img/s"),
      ("6-eps sweep / 1 eps", f"{r['sweep_over_single_eps']:9.2f} x time"),
      ("coloring 70k digits", f"{r['coloring_s_70k']:9.2f} s   first call (compile) "
                              f"{r['coloring_first_call_s']:.2f} s"),
      ("K=8: 8 sequential / vmapped",
       f"{r['k8_sequential_over_vmapped']:9.2f} x "
       f"({r['k8_sequential_s']:.2f} s vs {r['k8_vmapped_s']:.2f} s)"),
  ]
  for k, v in r.get("mlp_img_per_s", {}).items():
    layout = r["mlp_layout"][k]
    rows.append((f"MLP {k} ({r['mlp_replicas'][k]} replicas, {layout['replica_map']}, "
                 f"{layout['passes']} pass{'es' if layout['passes'] > 1 else ''})",
                 f"{v:9.0f} img/s   {r['mlp_achieved_flop_per_s'][k] / 1e9:7.2f} GFLOP/s "
                 f"({100 * r['mlp_fraction_of_peak'][k]:.1f}% of peak)"))
  width = max(len(a) for a, _ in rows)
  return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)
