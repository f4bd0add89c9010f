"""Interpretability of trained runs: Grad-CAM, feature visualization, channel selectivity.

  python -m launch.interpret --config=configs/interpret.py \
      --config.runs=cheater=/tmp/ccmnist/cheater,debiased=/tmp/ccmnist/counterfactual \
      --workdir=/tmp/ccmnist/interpret
  python -m launch.interpret --config=configs/interpret.py:quick --config.runs=... --workdir=DIR

Variants: None/'full' (the study's feature-visualization settings: 500 steps), 'quick' (100
steps, smaller image sets), 'tiny' (for tests: a few steps, a handful of images).
"""

import ml_collections

from configs import common


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
  c.featviz = ml_collections.ConfigDict(dict(
      layers=("conv0", "conv1", "conv2"), steps=500, lr=0.1, l2=0.01, init_std=0.1,
      jitter=0, scales=(), param="pixel", seed=0))
  c.selectivity = ml_collections.ConfigDict(dict(
      layers=("conv0", "conv1", "conv2"), pools=("mean", "map"), n_per_cell=20, seed=0,
      relu=False, threshold=0.5,
      ratio=2.0, topk=9, topk_split="test_hard", topk_pool=5000))
  c.sanity = ml_collections.ConfigDict(dict(
      num_images=200, seed=0, methods=("gradcam", "gradcam++", "saliency"), ig_steps=128,
      ig_rule="trapezoid"))
  if size == "quick":
    c.num_eval = 1000
    c.featviz.steps = 100
    c.selectivity.n_per_cell = 10
    c.selectivity.topk_pool = 2000
    c.sanity.num_images = 64
    c.sanity.ig_steps = 64
  elif size == "tiny":
    c.num_eval = 40
    c.batch_size = 20
    c.featviz.steps = 5
    c.selectivity.n_per_cell = 2
    c.selectivity.topk = 3
    c.selectivity.topk_pool = 60
    c.sanity.num_images = 8
    c.sanity.ig_steps = 8
  c.lock()
  return c
