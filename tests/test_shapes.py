"""Nothing assumes MNIST's shape: data of another image size, class count and palette size goes
through the data spec, model init, the real training loop and evaluation."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from ccmnist import models
from ccmnist.data import groups
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.eval import color_swap
from ccmnist.eval import run as eval_run
from ccmnist.train import loop
from ccmnist.train import runs
from configs import cheater
from configs import common

SIZE, CLASSES = 20, 4
# Six colors for four classes: colors 4 and 5 cue classes 0 and 1 as well.
COLOR_CLASS = (0, 1, 2, 3, 0, 1)


def small_data(**overrides) -> ml_collections.ConfigDict:
  """The tiny synthetic data at 20x20, 4 classes, 6 colors (COLOR_CLASS)."""
  c = common.data_config("tiny")
  c.image_size, c.num_classes, c.color_class = SIZE, CLASSES, COLOR_CLASS
  c.palette = palette_lib.PALETTE_RGB[:len(COLOR_CLASS)].tolist()
  c.train_size, c.test_size, c.val_unbiased_size = 256, 64, 40
  c.update(overrides)
  return c


def test_spec_of_the_study_and_of_small_data():
  study = splits_lib.spec(common.data_config())
  assert (study.image_shape, study.num_classes, study.num_colors) == ((28, 28, 3), 10, 10)
  assert study.color_class == tuple(range(10)) and study.aligned_share == 0.1
  small = splits_lib.spec(small_data())
  assert (small.image_shape, small.num_classes, small.num_colors) == ((20, 20, 3), 4, 6)
  assert small.color_class == COLOR_CLASS and small.aligned_share == 0.25


def test_bad_shape_fields_fail_with_what_to_fix():
  mnist = common.data_config()
  mnist.image_size = SIZE
  with pytest.raises(ValueError, match="MNIST is 28x28"):
    splits_lib.spec(mnist)
  with pytest.raises(ValueError, match="set config.data.color_class"):
    splits_lib.spec(small_data(color_class=None))
  with pytest.raises(ValueError, match="every class cued"):
    splits_lib.spec(small_data(color_class=(0, 1, 2, 0, 1, 2)))  # Class 3 has no color.
  with pytest.raises(ValueError, match="image_size >= 16"):
    splits_lib.spec(small_data(image_size=12))


def test_aligned_follows_the_color_map():
  colors, labels = np.array([0, 4, 5, 5, 2, 3]), np.array([0, 0, 1, 0, 3, 3])
  np.testing.assert_array_equal(groups.aligned(colors, labels, COLOR_CLASS),
                                [True, True, True, False, False, True])
  with pytest.raises(ValueError, match=r"\[0, 5\]"):
    groups.aligned(np.array([6]), np.array([0]), COLOR_CLASS)


def test_splits_of_small_data():
  s = splits_lib.get_splits(small_data(), use_cache=False)
  spec = splits_lib.spec(small_data())
  for name, split in s.items():
    assert splits_lib.image_shape(split) == spec.image_shape, name
    assert split["labels"].max() < CLASSES and split["colors"].max() < len(COLOR_CLASS)
    np.testing.assert_array_equal(
        split["aligned"], np.asarray(COLOR_CLASS)[split["colors"]] == split["labels"])
  assert not s["test_hard"]["aligned"].any()  # rho 0: never a color of its own class.
  assert s["train"]["aligned"].mean() > 0.85  # rho 0.95.
  # Classes 0 and 1 have two colors each: both are drawn.
  aligned0 = s["train"]["colors"][s["train"]["aligned"] & (s["train"]["labels"] == 0)]
  assert set(aligned0.tolist()) == {0, 4}
  assert (s["train"]["cf_colors"] != s["train"]["colors"]).all()
  assert splits_lib.cache_key(small_data()) != splits_lib.cache_key(common.data_config("tiny"))


def test_models_init_from_the_data_shape():
  spec = splits_lib.spec(small_data())
  model = models.get_model("cheater", num_classes=spec.num_classes)
  params = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), spec.image_shape))
  # 20 -> 10 -> 5 -> 5 pixels (stride 2, 2, 1), 16 channels, into 4 classes.
  assert params["Dense_0"]["kernel"].shape == (5 * 5 * 16, CLASSES)
  zeros = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), params)  # No compile.
  assert models.layer_shapes(model, zeros, spec.image_shape)["conv2"] == (1, 5, 5, 16)
  with pytest.raises(ValueError, match="image_shape"):
    models.init_params(model, jax.random.key(0), (20, 20))


def test_train_loop_and_evaluation_on_small_data(tmp_path):
  config = cheater.get_config("tiny")
  with config.unlocked():
    config.data = small_data()
    config.train.epochs = 1
  results = loop.train_and_evaluate(config, tmp_path)
  model, params, loaded = runs.load_run(tmp_path, replica=0)
  assert params["Dense_0"]["kernel"].shape == (5 * 5 * 16, CLASSES)
  preds = runs.load_predictions(tmp_path)
  assert preds["test_hard"].shape == (1, 64) and 0 <= preds["test_hard"].min()
  assert preds["test_hard"].max() < CLASSES
  assert splits_lib.spec(loaded.data) == splits_lib.spec(config.data)  # Saved and read back.
  json.dumps(results)
  ev = eval_run.evaluate_training_run(tmp_path, n_per_digit=4, figures=False)
  m = ev["replicas"][0]["splits"]["test_easy"]
  assert len(m["per_class"]) == CLASSES and np.asarray(m["confusion"]).shape == (4, 4)
  assert m["accuracy"] == pytest.approx(np.mean(preds["test_easy"][0] == splits_lib.get_splits(
      config.data)["test_easy"]["labels"]))
  swap = ev["replicas"][0]["color_swap"]
  assert np.asarray(swap["p_digit"]).shape == (CLASSES, len(COLOR_CLASS))


def test_identity_map_draws_the_colors_it_always_drew():
  """The study's map (color c cues class c) takes the same random numbers, in the same order, as
  'own color with probability rho, else (label + U{1..9}) % 10': the study's data is unchanged."""
  labels = np.random.default_rng(0).integers(0, 10, 5000).astype(np.int32)
  got = splits_lib.assign_colors(labels, 0.3, np.random.default_rng(1))
  rng = np.random.default_rng(1)
  keep = rng.random(labels.shape) < 0.3
  want = np.where(keep, labels, (labels + rng.integers(1, 10, size=labels.shape)) % 10)
  np.testing.assert_array_equal(got, want)


def test_conflicting_colors_are_uniform_over_the_other_classes_colors():
  labels = np.zeros(60_000, np.int32)  # Class 0: colors 0 and 4 are its own.
  colors = splits_lib.assign_colors(labels, 0.0, np.random.default_rng(2),
                                    color_class=COLOR_CLASS)
  counts = np.bincount(colors, minlength=6)
  assert counts[0] == counts[4] == 0
  np.testing.assert_allclose(counts[[1, 2, 3, 5]] / labels.size, 0.25, atol=0.01)


def test_color_swap_cells_follow_the_color_map():
  digits = np.repeat(np.arange(CLASSES), 6 * 2)
  colors = np.tile(np.repeat(np.arange(6), 2), CLASSES)
  cues = np.asarray(COLOR_CLASS)[colors]
  m = color_swap.swap_matrices(cues, digits, colors, color_class=COLOR_CLASS)  # Reads color.
  assert m["p_color"].shape == (CLASSES, 6)
  np.testing.assert_array_equal(m["p_color"], np.ones((CLASSES, 6)))
  np.testing.assert_array_equal(m["p_digit"], np.asarray(COLOR_CLASS)[None, :] ==
                                np.arange(CLASSES)[:, None])
