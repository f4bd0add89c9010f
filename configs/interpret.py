"""Interpretability of trained runs: Grad-CAM, representation measures with a null, featviz.

  python -m launch.interpret --config=configs/interpret.py \
      --config.runs=cheater=/tmp/ccmnist/cheater,debiased=/tmp/ccmnist/counterfactual \
      --workdir=/tmp/ccmnist/interpret
  python -m launch.interpret --config=configs/interpret.py:quick --config.runs=... --workdir=DIR

Variants: None/'full' (the study's feature-visualization settings: 500 steps), 'quick' (100
steps, smaller image sets), 'tiny' (for tests: a few steps, a handful of images).
"""

import ml_collections

from configs import common


# What the smaller variants change (quick: minutes on a laptop CPU; tiny: tests).
SMALLER = {
    "quick": {"num_eval": 1000, "featviz.steps": 100, "representation.num_images": 500,
              "representation.num_causal": 200, "representation.null_inits": 8,
              "topk.pool": 2000, "sanity.num_images": 64, "sanity.ig_steps": 64},
    "tiny": {"num_eval": 40, "batch_size": 20, "featviz.steps": 5,
             "representation.num_images": 60, "representation.num_causal": 30,
             "representation.null_inits": 5, "representation.folds": 3,
             "representation.batch_size": 30, "topk.k": 3, "topk.pool": 60,
             "sanity.num_images": 8, "sanity.ig_steps": 8},
}


def get_config(arg=None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg).size
  c = ml_collections.ConfigDict()
  c.runs = ""  # 'name1=/workdir1,name2=/workdir2': trained runs (launch.train workdirs).
  c.replica = 0  # Which replica of each run (see ccmnist.train.runs.replicas).
  c.data_from_run = True  # Test sets from the first run's data config; False: from c.data.
  c.data = common.data_config("tiny" if size == "tiny" else "full")
  c.seed = 0  # Case images.
  c.layer = "conv2"  # Grad-CAM layer: the third conv, as in the study.
  # The study's Grad-CAM cases, 'digit:color'.
  c.cases = ("0:red", "0:green", "3:yellow", "8:yellow", "7:brown")
  c.num_eval = 2000  # Test images per split for the Grad-CAM spread.
  c.batch_size = 250
  # The study's activation maximization, but projected onto valid images (project=True: pixels
  # kept in [0, 1] after every step), so the figures show images; project=False is the study's.
  c.featviz = ml_collections.ConfigDict(dict(
      layers=("conv0", "conv1", "conv2"), steps=500, lr=0.1, l2=0.01, init_std=0.1,
      jitter=0, scales=(), param="pixel", seed=0, project=True))
  # Representation measures beside their null (ccmnist/interpret/representation.py):
  # num_images test digits (balanced) each with its recolored and its other-digit twin;
  # probes by `folds`-fold cross-validation (ridge alpha, pooling grid x grid); causal
  # patching on the first num_causal; the null: null_inits random inits (keys null_seed, ...)
  # and the hue-blind copy; channel calls beyond the inits' `quantile` (two-sided: 0.975 puts
  # 2.5% of null channels on each side) and causal calls beyond their causal_quantile.
  c.representation = ml_collections.ConfigDict(dict(
      layers=("conv0", "conv1", "conv2"), num_images=1000, num_causal=500, seed=0,
      null_inits=10, null_seed=1000, folds=5, alpha=1e-2, grid=2, quantile=0.975,
      causal_quantile=0.95, batch_size=250))
  c.topk = ml_collections.ConfigDict(dict(
      layers=("conv0", "conv1", "conv2"), k=9, split="test_hard", pool=5000))
  c.sanity = ml_collections.ConfigDict(dict(
      num_images=200, seed=0, methods=("gradcam", "gradcam++", "saliency"), ig_steps=128,
      ig_rule="trapezoid"))
  c.update_from_flattened_dict(SMALLER.get(size, {}))
  c.lock()
  return c
