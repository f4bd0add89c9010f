"""Tests of ccmnist.interpret.representation: probes, invariance and causal patching, with nulls."""

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ccmnist import models
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.interpret import representation as R
from ccmnist.models.layers import expose

LAYERS = ("conv0", "conv1", "conv2")


@functools.lru_cache(maxsize=None)
def stimuli(num=100, noise_sigma=0.02):
  grey, labels = splits_lib.synthetic_digits(300, np.random.default_rng(0))
  return R.counterfactual_stimuli(grey, labels, num=num, num_classes=10, seed=3,
                                  noise_sigma=noise_sigma)


def measure(model, params, stim, layers=LAYERS, num_causal=20):
  return R.network_measures(model, params, stim, layers=layers, num_causal=num_causal,
                            folds=R.folds_of(len(stim["labels"]), 3, 0), alpha=1e-2, grid=2,
                            num_classes=10, num_colors=10, batch_size=50)


@functools.lru_cache(maxsize=None)
def cheater():
  return models.get_model("cheater", num_classes=10, conv_impl="lax")


@functools.lru_cache(maxsize=None)
def random_measures(seed, inits=5):
  model = cheater()
  return tuple(measure(model, p, stimuli()) for p in R.random_params(
      model, inits=inits, seed=seed, image_shape=(28, 28, 3)))


# ---------------------------------------------------------------- stimuli

def test_intensity_partners_of_the_study_palette():
  names = palette_lib.COLOR_NAMES
  groups = {names[c]: sorted(names[k] for k in p)
            for c, p in enumerate(R.intensity_partners(palette_lib.PALETTE_RGB))}
  assert groups["red"] == ["blue", "green"] and groups["cyan"] == ["magenta", "yellow"]
  assert groups["orange"] == ["violet"] and groups["brown"] == ["forest_green"]
  inten = R.channel_intensity(palette_lib.PALETTE_RGB)
  for c, p in enumerate(R.intensity_partners(palette_lib.PALETTE_RGB)):
    np.testing.assert_array_equal(inten[p], inten[c])
  # Another palette: the nearest intensity, ties within half a level included.
  pal = np.array([[i * 24, i * 6, 0] for i in range(10)], np.uint8)  # Intensities 0, 10, ...
  pal[5] = [0, 0, 123]  # Intensity 41: the nearest of color 4 (40), and 4 of it.
  parts = R.intensity_partners(pal)
  assert [list(parts[c]) for c in (0, 2, 4, 5)] == [[1], [1, 3], [5], [4]]


def test_counterfactual_stimuli_differ_in_one_factor():
  grey, labels = splits_lib.synthetic_digits(300, np.random.default_rng(0))
  st = stimuli()
  idx, alt = st["indices"], st["alt_indices"]
  assert np.bincount(st["labels"], minlength=10).tolist() == [10] * 10
  np.testing.assert_array_equal(st["labels"], labels[idx])
  np.testing.assert_array_equal(st["alt_labels"], labels[alt])
  assert (st["alt_labels"] != st["labels"]).all() and (st["cf_colors"] != st["colors"]).all()
  inten = R.channel_intensity(palette_lib.PALETTE_RGB)
  np.testing.assert_array_equal(inten[st["cf_colors"]], inten[st["colors"]])
  assert st["intensity_gap_mean"] == 0.0
  # x and x_cf: equal off the stroke (same background and noise), different on it.
  bg = grey[idx] == 0
  np.testing.assert_array_equal(st["x"][bg], st["x_cf"][bg])
  assert (st["x"][~bg] != st["x_cf"][~bg]).mean() > 0.5
  # x and x_alt: equal where neither digit has a stroke; there the same draws.
  both = bg & (grey[alt] == 0)
  np.testing.assert_array_equal(st["x"][both], st["x_alt"][both])
  assert not np.array_equal(st["x"], st["x_alt"])
  # Colors are uniform, independent of the digit: every color appears.
  assert len(np.unique(st["colors"])) == 10
  with pytest.raises(ValueError, match="lower num_images"):
    R.counterfactual_stimuli(grey, labels, num=1000, num_classes=10)


# ---------------------------------------------------------------- probes

def test_ridge_matches_the_closed_form():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
  xt = rng.normal(size=(20, 5))
  got = R.ridge_fit_predict(x, y, xt, alpha=0.1, num_classes=3)
  mu, sd = x.mean(0), x.std(0)
  z, zt = (x - mu) / sd, (xt - mu) / sd
  onehot = np.eye(3)[y]
  w = np.linalg.solve(z.T @ z + 0.1 * 80 * np.eye(5), z.T @ (onehot - onehot.mean(0)))
  np.testing.assert_array_equal(got, np.argmax(zt @ w + onehot.mean(0), axis=1))
  folds = R.folds_of(10, 3, 0)
  assert sorted(np.bincount(folds).tolist()) == [3, 3, 4]
  with pytest.raises(ValueError, match="folds"):
    R.folds_of(10, 1, 0)


def test_probe_on_one_hot_color_reads_color_not_digit():
  rng = np.random.default_rng(1)
  colors, digits = rng.integers(0, 10, 1000), rng.integers(0, 10, 1000)
  feats = np.eye(10)[colors]
  folds = R.folds_of(1000, 5, 0)
  assert R.ridge_probe(feats, colors, folds, num_classes=10) == 1.0
  assert abs(R.ridge_probe(feats, digits, folds, num_classes=10) - 0.1) < 0.05  # Chance.


def test_pooled_features():
  a = np.arange(2 * 4 * 4 * 3, dtype=np.float64).reshape(2, 4, 4, 3)
  f = R.pooled_features(a, grid=2)
  assert f.shape == (2, 3 * 6)
  np.testing.assert_allclose(f[:, :3], a.mean((1, 2)))
  np.testing.assert_allclose(f[:, 3:6], a.max((1, 2)))
  np.testing.assert_allclose(f[:, 6:9], a[:, :2, :2].mean((1, 2)))
  np.testing.assert_allclose(f[:, 15:18], a[:, 2:, 2:].mean((1, 2)))


# ---------------------------------------------------------------- invariance and calls

def test_invariance_by_hand():
  h = np.zeros((2, 1, 2, 2))
  cf, alt = h.copy(), h.copy()
  cf[0, 0, :, 0] = 1.0  # Channel 0 moves with color: energy 2 in image 0 -> mean 1.
  alt[:, 0, 0, 0] = 2.0  # ... and with the digit: 4 per image -> mean 4.
  alt[:, 0, :, 1] = 1.0  # Channel 1 moves only with the digit: 2 per image.
  r = R.invariance(h, cf, alt)
  np.testing.assert_allclose(r["color_energy"], [1.0, 0.0])
  np.testing.assert_allclose(r["digit_energy"], [4.0, 2.0])
  np.testing.assert_allclose(r["ratio"], [0.25, 0.0])
  assert r["layer_ratio"] == pytest.approx(1.0 / 6.0)
  classes = R.classify([5.0, 0.01, 1.0, 1.0, np.nan], [1, 1, 1, 0, 1], lo=0.1, hi=2.0)
  assert list(classes) == ["color", "shape", "mixed", "dead", "dead"]


def test_selectivity_merges_mixed_and_dead_into_neither():
  classes = ["color", "shape", "mixed", "dead", "color"]
  np.testing.assert_array_equal(R.selectivity(classes),
                                ["color", "shape", "neither", "neither", "color"])
  assert R.selectivity_counts(classes) == {"color": 2, "shape": 1, "neither": 2, "channels": 5}


def feature_maps(fn):
  """fn(grey digits [N, 28, 28], colors [N], RGB images [N, 28, 28, 3]) -> features
  [N, 7, 7, C], evaluated on x, x_cf and x_alt of the synthetic stimuli."""
  grey, _ = splits_lib.synthetic_digits(300, np.random.default_rng(0))
  st = stimuli()
  sets = {"x": (st["indices"], st["colors"]), "x_cf": (st["indices"], st["cf_colors"]),
          "x_alt": (st["alt_indices"], st["colors"])}
  return [fn(grey[idx].astype(np.float64), col, st[name].astype(np.float64))
          for name, (idx, col) in sets.items()]


def pool7(a):
  """[N, 28, 28, ...] -> [N, 7, 7, ...]: means of 4 x 4 blocks."""
  return a.reshape(a.shape[0], 7, 4, 7, 4, *a.shape[3:]).mean(axis=(2, 4))


def random_projection(seed, channels):
  """Random linear features of the colored images: what a random 1 x 1 conv of the pooled
  pixels sees (it moves with the stroke's color and with the digit)."""
  w = np.random.default_rng(seed).normal(size=(3, channels))
  return lambda grey, colors, images: pool7(images) @ w


def test_hand_built_shape_color_and_random_features_are_called_by_selectivity():
  null = R.invariance(*feature_maps(random_projection(0, 300)))["ratio"]
  # The grey digit alone (blind to color): its recolored twin is the same map.
  shape = R.channel_selectivity(*feature_maps(lambda g, c, x: pool7(g)[..., None]), null)
  # The stroke's palette color alone, at every position: another digit in the same color is
  # the same map.
  color = R.channel_selectivity(*feature_maps(
      lambda g, c, x: np.broadcast_to(palette_lib.PALETTE_RGB[c][:, None, None, :],
                                      (len(c), 7, 7, 3)).astype(np.float64)), null)
  assert list(shape) == ["shape"] and list(color) == ["color"] * 3
  # Fresh random features of the null's kind: 2.5% expected in each tail.
  calls = R.channel_selectivity(*feature_maps(random_projection(1, 400)), null)
  assert np.mean(calls == "neither") >= 0.9, np.unique(calls, return_counts=True)
  with pytest.raises(ValueError, match="at least 2"):
    R.channel_selectivity(*feature_maps(lambda g, c, x: pool7(g)[..., None]), [np.nan, 1.0])


def hand_built(params):
  """Conv_0 channel 0: a hue detector (+R, -G at every tap); channel 1: a grey vertical edge
  (equal R, G, B weights, + on the left half, - on the right)."""
  k = np.array(params["Conv_0"]["kernel"])
  k[..., 0] = 0.0
  k[..., 0, 0], k[..., 1, 0] = 0.05, -0.05
  edge = np.zeros((9, 9))
  edge[:, :4], edge[:, 5:] = 0.05, -0.05
  k[..., 1] = edge[:, :, None]
  b = np.array(params["Conv_0"]["bias"])
  b[:2] = 0.0
  return {**params, "Conv_0": {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)}}


def test_hand_built_hue_detector_is_color_and_grey_edge_is_shape():
  model = cheater()
  nulls = list(random_measures(1000))
  params = hand_built(models.init_params(model, jax.random.key(7), (28, 28, 3)))
  m = measure(model, params, stimuli(), layers=("conv0",))
  lo, hi = R.ratio_range(nulls, "conv0")
  classes = R.classify(m["conv0"]["ratio"], m["conv0"]["max_act"], lo, hi)
  assert classes[0] == "color" and classes[1] == "shape", (m["conv0"]["ratio"][:2], lo, hi)


def test_random_inits_are_rarely_called_selective():
  # Fresh inits against the null of 10 other inits: at most 10% of their channels called.
  # (Channels of one init share its earlier layers, so a null of few inits is narrow: called
  # fractions fall with more inits.)
  nulls = list(random_measures(1000, inits=10))
  called = []
  for r in random_measures(2000, inits=10):
    for layer in LAYERS:
      lo, hi = R.ratio_range(nulls, layer)
      c = R.classify(r[layer]["ratio"], r[layer]["max_act"], lo, hi)
      called.extend((c == "color") | (c == "shape"))
  assert len(called) == 10 * (8 + 16 + 16)
  assert np.mean(called) <= 0.10, np.mean(called)


# ---------------------------------------------------------------- hue-blind and causal

def test_hue_blind_sees_intensity_and_is_blind_to_matched_recoloring():
  model = cheater()
  params = R.hue_blind(models.init_params(model, jax.random.key(3), (28, 28, 3)))
  k = np.asarray(params["Conv_0"]["kernel"])
  np.testing.assert_array_equal(k[:, :, 0], k[:, :, 1])
  np.testing.assert_array_equal(k[:, :, 0], k[:, :, 2])
  x = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 3)).astype(np.float32)
  grey = np.repeat(x.mean(-1, keepdims=True), 3, axis=-1)
  np.testing.assert_allclose(model.apply({"params": params}, x),
                             model.apply({"params": params}, grey), rtol=1e-4, atol=1e-4)
  # Noise-free stimuli: the partners are channel permutations of each other, so the
  # recolored twin is the same image to a hue-blind network.
  m = measure(model, params, stimuli(noise_sigma=0.0))
  for layer in LAYERS:
    assert m[layer]["layer_ratio"] < 1e-9, m[layer]["layer_ratio"]
    assert m[layer]["causal"]["layer"] == 0.0 and m[layer]["causal"]["channel"].max() == 0.0
  assert m["input_swap"]["changed"] == 0.0
  with pytest.raises(ValueError, match="one conv with 3 input channels"):
    R.hue_blind({"Dense_0": {"kernel": jnp.zeros((4, 2))}})


class ColorReader(nn.Module):
  """conv0 = the image's R, G, B (a 1x1 conv), exposed; logits = its spatial mean."""

  @nn.compact
  def __call__(self, x):
    a = expose(self, "conv0", nn.Conv(3, (1, 1), name="conv")(x / 255.0))
    return a.mean(axis=(1, 2))


def test_causal_patching_by_hand():
  model = ColorReader()
  # Logits: the mean R, G + 0.01, B (over the image, in [0, 1] units).
  params = {"conv": {"kernel": jnp.eye(3)[None, None], "bias": jnp.asarray([0.0, 0.01, 0.0])}}
  x = np.full((2, 28, 28, 3), 100.0, np.float32)
  x_cf = x.copy()
  x[:, 10:20, 10:20] = (255.0, 0.0, 0.0)  # Red strokes: predicted class 0 (R is largest).
  x_cf[:, 10:20, 10:20] = (0.0, 255.0, 0.0)  # Green: class 1.
  r = R.causal_shares(model, params, x, x_cf, np.array([1, 1]), layer="conv0", batch_size=2)
  # Patching R (channel 0) drops it to the background's level, below G + 0.01: class 1.
  # B is the same in x and x_cf: patching it changes nothing.
  np.testing.assert_array_equal(r["channel"][[0, 2]], [1.0, 0.0])
  assert r["layer"] == 1.0 and r["to_cf_color"] == 1.0


def test_whole_layer_patch_equals_the_input_swap():
  model = cheater()
  params = models.init_params(model, jax.random.key(5), (28, 28, 3))
  st = stimuli()
  m = measure(model, params, st, num_causal=100)  # All 100 images: same set as input_swap.
  for layer in LAYERS:
    assert m[layer]["causal"]["layer"] == m["input_swap"]["changed"]
    width = models.layer_shapes(model, params, (28, 28, 3))[layer][-1]
    assert m[layer]["causal"]["channel"].shape == (width,)


def test_summary_has_a_null_beside_every_measure():
  model = cheater()
  nulls = list(random_measures(1000))
  params = models.init_params(model, jax.random.key(11), (28, 28, 3))
  s = R.summarize(measure(model, params, stimuli()), nulls,
                  measure(model, R.hue_blind(params), stimuli()), layers=LAYERS)
  json.dumps(s, allow_nan=False)  # Plain JSON.
  assert {"input_swap", "input_swap_null"} <= set(s)
  for layer in LAYERS:
    r = s["layers"][layer]
    assert set(r) == {"probe", "probe_null", "invariance", "invariance_null", "causal",
                      "causal_null", "selectivity", "selectivity_null"}
    counts = r["selectivity"]
    assert counts["color"] + counts["shape"] + counts["neither"] == counts["channels"]
    assert counts["channels"] == len(r["invariance"]["classes"])
    for key in ("probe", "invariance", "causal"):
      assert set(r[f"{key}_null"]) == {"random", "hue_blind"}
    assert len(r["probe_null"]["random"]["color"]["values"]) == 5
    p = r["probe_null"]["random"]["digit"]
    assert p["min"] <= p["mean"] <= p["max"] and p["p95"] <= p["max"]
    assert len(r["invariance"]["classes"]) == len(r["invariance"]["channel_ratio"])
    assert sum(r["invariance"]["fractions"].values()) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="at least 2"):
    R.random_params(model, inits=1, seed=0, image_shape=(28, 28, 3))
