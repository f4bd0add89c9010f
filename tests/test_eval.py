"""Evaluation metrics on hand-made predictions, the probe, the batched forward,
evaluate_training_run."""

import json
import logging

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import pytest

from ccmnist import eval as eval_lib
from ccmnist import models
from ccmnist import plots
from ccmnist.data import splits as splits_lib
from ccmnist.eval import metrics
from ccmnist.eval import color_swap
from ccmnist.plots import eval as eval_plots
from ccmnist.train import loop
from ccmnist.train import runs
from configs import cheater

# 10 hand-made examples: 4 aligned (3 right), 6 conflicting (2 right).
LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 3, 4, 4])
PREDS = np.array([0, 1, 2, 0, 0, 9, 9, 9, 4, 9])
ALIGNED = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)


def test_accuracy_and_groups():
  assert metrics.accuracy(PREDS, LABELS) == pytest.approx(0.5)
  g = metrics.group_accuracy(PREDS, LABELS, ALIGNED)
  assert g["aligned"] == pytest.approx(3 / 4)
  assert g["conflicting"] == pytest.approx(2 / 6)
  assert metrics.unbiased_equivalent(g["aligned"], g["conflicting"],
                                    aligned_share=0.1) == pytest.approx(0.1 * 0.75 + 0.9 * 2 / 6)
  assert metrics.unbiased_equivalent(g["aligned"], g["conflicting"],
                                    aligned_share=0.25) == pytest.approx(0.25 * 0.75 + 0.75 * 2 / 6)
  empty = metrics.group_accuracy(PREDS, LABELS, np.zeros(10, bool))
  assert empty["aligned"] is None and empty["conflicting"] == pytest.approx(0.5)
  assert metrics.unbiased_equivalent(None, 0.5, aligned_share=0.1) is None


def test_confusion_and_worst_class():
  cm = metrics.confusion_matrix(PREDS, LABELS, num_classes=10)
  assert cm.sum() == 10 and cm.shape == (10, 10)
  assert cm[0, 0] == 2 and cm[1, 1] == 1 and cm[1, 9] == 1 and cm[3, 0] == 1 and cm[3, 9] == 1
  assert cm[4, 4] == 1 and cm[4, 9] == 1
  per = metrics.per_class_accuracy(PREDS, LABELS, num_classes=10)
  assert per[:5] == [1.0, 0.5, 0.5, 0.0, 0.5]
  assert per[5:] == [None] * 5
  assert metrics.worst_class_accuracy(PREDS, LABELS, num_classes=10) == {"accuracy": 0.0,
                                                                         "class": 3}
  m = metrics.split_metrics(PREDS, LABELS, ALIGNED,
                            spec=splits_lib.Spec((28, 28, 3), 10, tuple(range(10))))
  assert len(m["per_class"]) == 10 and np.asarray(m["confusion"]).shape == (10, 10)
  assert (m["n"], m["n_aligned"], m["worst_class_id"]) == (10, 4, 3)
  json.dumps(m)  # json-ready
  with pytest.raises(ValueError, match="one length"):
    metrics.accuracy(PREDS[:3], LABELS)
  with pytest.raises(ValueError, match="classes"):
    metrics.confusion_matrix(np.array([10]), np.array([0]), num_classes=10)


def test_swap_matrices():
  digits = np.repeat(np.arange(10), 20)
  colors = np.tile(np.repeat(np.arange(10), 2), 10)
  by_color = color_swap.swap_matrices(colors, digits, colors)
  np.testing.assert_array_equal(by_color["p_color"], np.ones((10, 10)))
  np.testing.assert_array_equal(by_color["p_digit"], np.eye(10))
  by_shape = color_swap.swap_matrices(digits, digits, colors)
  np.testing.assert_array_equal(by_shape["p_digit"], np.ones((10, 10)))
  half = np.where(np.arange(200) % 2 == 0, digits, colors)  # one of each pair follows color
  m = color_swap.swap_matrices(half, digits, colors)
  off = ~np.eye(10, dtype=bool)
  np.testing.assert_allclose(m["p_digit"][off], 0.5)
  np.testing.assert_allclose(m["p_color"][off], 0.5)


def test_color_swap_images_deterministic_and_colored():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 4)
  grey = np.zeros((40, 28, 28), np.uint8)
  grey[:, 10:18, 10:18] = 255
  grey[labels == 5] = 0  # No stroke: pure background.
  grey[labels == 5, 10:18, 10:18] = 255
  rng.shuffle(labels)
  a = color_swap.color_swap_images(grey, labels, n_per_digit=3, seed=1)
  b = color_swap.color_swap_images(grey, labels, n_per_digit=3, seed=1)
  c = color_swap.color_swap_images(grey, labels, n_per_digit=3, seed=2)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])
  images, digits, colors = a
  assert images.shape == (300, 28, 28, 3)
  np.testing.assert_array_equal(np.bincount(digits * 10 + colors), np.full(100, 3))
  from ccmnist.data import palette
  stroke = images[:, 12:16, 12:16].reshape(300, -1, 3).mean(1)
  np.testing.assert_allclose(stroke, palette.PALETTE_RGB[colors], atol=8)
  with pytest.raises(ValueError, match="n_per_digit"):
    color_swap.color_swap_images(grey, labels, n_per_digit=5)
  # A grayscale data config's probe: the same draws, made grey.
  g = color_swap.color_swap_images(grey, labels, n_per_digit=3, seed=1, grayscale=True)[0]
  np.testing.assert_array_equal(g, np.repeat((images.astype(np.uint16).sum(-1) // 3)[
      ..., None], 3, axis=-1))


def test_predict_pads_without_recompiling(caplog):
  model = models.get_model("cheater", num_classes=10, conv_impl="lax")
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  forward = eval_lib.make_forward(model)
  images = np.random.default_rng(0).integers(0, 256, (13, 28, 28, 3), dtype=np.uint8)
  got = eval_lib.predict_logits(forward, params, images, batch_size=8)
  assert got.shape == (13, 10)
  want = model.apply({"params": params}, jnp.asarray(images, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  with caplog.at_level(logging.WARNING), jax.log_compiles():  # Any count: the same one shape.
    # Rows padded into a batch come out exactly as they do beside other images.
    np.testing.assert_array_equal(
        eval_lib.predict_logits(forward, params, images[:5], batch_size=8), got[:5])
    eval_lib.predict_logits(forward, params, images[:8], batch_size=8)
  assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
  with pytest.raises(ValueError, match="at least one"):
    eval_lib.predict_logits(forward, params, images[:0], batch_size=8)


def test_plots_return_figures():
  cm = metrics.confusion_matrix(PREDS, LABELS, num_classes=10)
  assert isinstance(eval_plots.confusion_figure(cm, title="t"), matplotlib.figure.Figure)
  fig = eval_plots.color_swap_figure(np.eye(10), np.ones((10, 10)), n_per_cell=5)
  assert len(fig.axes) == 4  # two heatmaps, two colorbars
  assert "cue" in fig.axes[0].get_xlabel() and fig.get_suptitle().startswith("Color-swap probe ")
  grey = eval_plots.color_swap_figure(np.eye(10), np.ones((10, 10)), grey=True)
  assert grey.axes[0].get_xlabel() == "painted color, then made grey"
  assert "made grey" in grey.get_suptitle()
  runs = {"a": {"epoch": [1, 2], "test_easy": [0.5, 0.9], "test_hard": [0.1, 0.2]},
          "b": {"epoch": [1, 2], "test_easy": [0.4, 0.6], "test_hard": [0.3, 0.5]}}
  fig = eval_plots.training_curves_figure(runs)
  assert [ax.get_title() for ax in fig.axes] == ["test_easy", "test_hard"]  # One panel a split.
  for ax in fig.axes:
    lines = ax.get_lines()
    assert len(lines) == 2 + 1  # one line per run, and the chance line
    assert {ln.get_linewidth() for ln in lines[:2]} == {1.5}  # Normal widths, no rims.
    assert [ln.get_color() for ln in lines[:2]] == [plots.model_color("a"), plots.model_color("b")]
  assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["a", "b"]
  # A run equal to another in every split is one line named by both; in part, two lines.
  runs["c"] = dict(runs["a"])
  runs["d"] = {**runs["b"], "test_hard": [0.3, 0.6]}
  fig = eval_plots.training_curves_figure(runs)
  assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["a = c", "b", "d"]
  assert fig.axes[0].get_lines()[0].get_color() == plots.model_color("a")


def test_one_color_per_model_everywhere():
  names = ("cheater", "gradient_penalty", "counterfactual", "color_gradient_penalty",
           "erm_adam", "erm_momentum", "erm_adam_noise", "grayscale")
  assert len({plots.model_color(n) for n in names}) == len(names)
  assert plots.model_color("counterfactual@0") != plots.model_color("counterfactual")
  assert plots.model_color("counterfactual@0") == plots.model_color("counterfactual@0.0")
  assert plots.model_color("someone_else") == plots.model_color("someone_else")


def test_evaluate_training_run_matches_training_eval(tmp_path):
  c = cheater.get_config("tiny")
  c.num_seeds = 2
  results = loop.train_and_evaluate(c, tmp_path)
  out = eval_lib.evaluate_training_run(tmp_path)
  assert json.loads((tmp_path / "eval.json").read_text())["summary"] == out["summary"]
  assert {p.name for p in (tmp_path / "figures").iterdir()} == {
      "confusion_test_easy.png", "confusion_test_hard.png",
      "color_swap.png", "training_curves.png"}
  assert len(out["replicas"]) == 2
  for r, rep in zip(out["replicas"], results["replicas"]):
    for split in ("train", "test_easy", "test_hard"):
      assert r["splits"][split]["accuracy"] == pytest.approx(rep["accuracy"][split], abs=1e-6)
  for split in ("train", "test_easy", "test_hard"):
    assert out["summary"][split]["accuracy"] == pytest.approx(results["accuracy"][split],
                                                              abs=1e-6)
  hard = out["replicas"][0]["splits"]["test_hard"]
  assert hard["aligned"] is None and hard["conflicting"] == hard["accuracy"]
  cs = out["replicas"][0]["color_swap"]
  np.testing.assert_allclose(np.diag(cs["p_digit"]), np.diag(cs["p_color"]))
  assert cs["three_brown"]["p_pred_8"] == cs["p_color"][3][8]
  curves = eval_lib.read_curves(tmp_path, replica=1)
  assert curves["epoch"] == [1, 2]
  assert curves["test_hard"][-1] == pytest.approx(results["replicas"][1]["accuracy"]["test_hard"])
  assert "train" not in curves  # By default the train split is evaluated after the last epoch.

  # evaluate_training_run reused the loop's last predictions; predicting afresh gives the same
  # metrics.
  preds = runs.load_predictions(tmp_path)
  assert preds["test_hard"].shape == (2, len(splits_lib.get_splits(c.data)["test_hard"]["labels"]))
  (tmp_path / "predictions.npz").unlink()
  again = eval_lib.evaluate_training_run(tmp_path, figures=False, figure_replica=1)
  for r, r2 in zip(out["replicas"], again["replicas"]):
    assert r["splits"] == r2["splits"]
  written = (tmp_path / "eval.json").read_text()
  with pytest.raises(ValueError, match="figure_replica 2 out of range"):
    eval_lib.evaluate_training_run(tmp_path, figure_replica=2)
  assert (tmp_path / "eval.json").read_text() == written  # Nothing written is damaged.
