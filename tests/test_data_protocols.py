"""The benchmark's data protocols: LfF's Colored MNIST coloring, grayscale, the balanced held-out
split, the train split's grey digits with their JAX recoloring, groups and environments, and
LfF's MLP."""

import hashlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ccmnist import models
from ccmnist.data import coloring
from ccmnist.data import groups
from ccmnist.data import palette
from ccmnist.data import splits
from configs import common


def _bits(seed_rng: np.random.Generator, size: int) -> np.ndarray:
  """The uint16 bits colorize draws for its first chunk: a seed from the generator, then SFC64."""
  seed = seed_rng.integers(0, 2 ** 63, 1)[0]
  return np.random.SFC64(seed).random_raw(-(-size // 4)).view(np.uint16)[:size]


def _lff_cfg(**overrides):
  cfg = common.data_config("tiny")
  cfg.coloring = "lff"
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


# ---------------------------------------------------------------- LfF palette and coloring

def test_lff_palette_is_the_published_tensor():
  # SHA-256 of the 120 float32 bytes stored in alinlab/LfF data/resource/colors.th (e66796e).
  digest = hashlib.sha256(palette.LFF_COLORS.astype("<f4").tobytes()).hexdigest()
  assert digest == "9529cab5a137035a3f859ae6752bd3ffa80d8d73b7f8eb78b1c6806a99a58aa3"
  assert palette.LFF_COLORS[0].tolist() == np.float32([0.98368233, 0.312519, 0.16857535]).tolist()
  np.testing.assert_array_equal(palette.LFF_PALETTE, palette.LFF_COLORS * np.float32(255))
  assert palette.LFF_PALETTE.dtype == np.float32 and palette.LFF_PALETTE.max() < 255
  np.testing.assert_array_equal(palette.palette_levels(palette.LFF_PALETTE), palette.LFF_PALETTE)
  with pytest.raises(ValueError, match=r"shape \(10, 4\)"):
    palette.palette_levels(np.zeros((10, 4)))
  with pytest.raises(ValueError, match=r"\[0, 255\]"):
    palette.palette_levels(np.full((10, 3), 255.5))


def test_lff_formula_on_hand_made_digit():
  """trunc(C * grey / 255) on black, C the palette color in levels (no jitter at std 0)."""
  grey = np.array([[[0, 255], [102, 51]]], np.uint8)
  img = coloring.colorize(grey, np.array([0]), np.random.default_rng(0), mode="lff",
                          color_std=0.0)
  # C = 255 * (0.98368233, 0.312519, 0.16857535) = (250.839, 79.692, 42.987); x 0.4, x 0.2.
  assert img[0].tolist() == [[[0, 0, 0], [250, 79, 42]], [[100, 31, 17], [50, 15, 8]]]
  own = np.tile(np.array([[200, 100, 50]], np.uint8), (10, 1))
  img = coloring.colorize(grey, np.array([4]), np.random.default_rng(0), mode="lff",
                          color_std=0.0, palette=own)
  assert img[0, 0].tolist() == [[0, 0, 0], [200, 100, 50]]
  assert img[0, 1].tolist() == [[80, 40, 20], [40, 20, 10]]


def test_lff_jitter_is_one_gaussian_per_image_and_channel():
  n = 4000
  grey = np.zeros((n, 28, 28), np.uint8)
  grey[:, 5:20, 5:20] = 255
  color = 2  # (171.6, 117.6, 147.9) levels: 0.05 * 255 = 12.75 levels of jitter rarely clip.
  img = coloring.colorize(grey, np.full(n, color), np.random.default_rng(1), mode="lff",
                          color_std=0.05).astype(float)
  stroke = img[:, 5:20, 5:20]
  assert np.all(stroke == stroke[:, :1, :1]), "one jitter per image, on every stroke pixel"
  assert np.all(img[:, :5] == 0) and np.all(img[:, 20:] == 0)  # Black background, no noise.
  v = stroke[:, 0, 0]  # [n, 3]
  # Truncation moves the mean by half a level; the std stays 12.75 (+- 2% at n = 4000).
  np.testing.assert_allclose(v.mean(0), palette.LFF_PALETTE[color] - 0.5, atol=1.0)
  np.testing.assert_allclose(v.std(0), 0.05 * 255, rtol=0.06)
  corr = np.corrcoef(v.T)[np.triu_indices(3, 1)]
  assert np.all(np.abs(corr) < 0.1), corr  # Independent per channel.
  # Color 1's red (252.6 levels) clips at 255, never above.
  red = coloring.colorize(grey[:500], np.ones(500, int), np.random.default_rng(2), mode="lff",
                          color_std=0.05)[:, 10, 10, 0]
  assert red.max() == 255 and np.mean(red == 255) > 0.2


def test_lff_same_on_any_core_count_and_chunks_differ(monkeypatch):
  grey = np.full((3 * coloring._CHUNK, 28, 28), 255, np.uint8)  # pylint: disable=protected-access
  colors = np.zeros(len(grey), int)
  out = {}
  for cores in (1, 4):
    monkeypatch.setattr(coloring.os, "cpu_count", lambda cores=cores: cores)
    out[cores] = coloring.colorize(grey, colors, np.random.default_rng(7), mode="lff")
  np.testing.assert_array_equal(out[1], out[4])
  first, second = np.split(out[1][:2 * coloring._CHUNK], 2)  # pylint: disable=protected-access
  assert not np.array_equal(first, second)


def test_lff_kernel_computes_the_formula(monkeypatch):
  """The jitted chunk against numpy on the same bits: a jitter table lookup per digit and
  channel, clipped, times d."""
  monkeypatch.setattr(coloring, "_CHUNK", 64)
  rng = np.random.default_rng(3)
  grey = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)  # Two chunks, the last padded.
  colors = rng.integers(0, 10, 100)
  img = coloring.colorize(grey, colors, np.random.default_rng(4), mode="lff", color_std=0.02)
  seeds = np.random.default_rng(4).integers(0, 2 ** 63, 2)
  f32 = np.float32
  expected = []
  for chunk, seed in enumerate(seeds):
    bits = np.random.SFC64(seed).random_raw(-(-64 * 3 // 4)).view(np.uint16)[:64 * 3]
    sl = slice(64 * chunk, 64 * chunk + 64)
    m = len(grey[sl])
    jitter = coloring.noise_table(0.02)[bits.reshape(64, 1, 3)[:m]]
    c = np.clip(palette.LFF_PALETTE[colors[sl]][:, None, :] + jitter, 0, 255)
    d = grey[sl].reshape(m, -1, 1).astype(f32) * f32(1 / 255)
    expected.append(np.clip(c * d, 0, 255).astype(np.uint8))
  expected = np.concatenate(expected).reshape(img.shape)
  diff = np.abs(img.astype(int) - expected)
  assert diff.max() <= 1 and np.mean(diff) < 1e-4


def test_lff_config_defaults_and_errors():
  cfg = _lff_cfg()
  np.testing.assert_array_equal(splits.palette_of(cfg), palette.LFF_PALETTE)
  assert splits.coloring_kwargs(cfg).keys() == {"mode", "palette", "color_std"}
  assert splits.coloring_kwargs(cfg)["color_std"] == 0.005
  study = common.data_config("tiny")
  assert splits.coloring_kwargs(study).keys() == {"mode", "palette", "noise_sigma", "bg_range"}
  np.testing.assert_array_equal(splits.palette_of(study), palette.PALETTE_RGB)
  s = splits.build_splits(cfg)
  assert all(split["images"].dtype == np.uint8 for split in s.values())
  tr = s["train"]
  empty = tr["grey"] == 0
  assert np.all(tr["images"][empty] == 0) and np.all(tr["cf_images"][empty] == 0)
  for value, match in ((-0.1, "color_std"), (2.0, "color_std")):
    with pytest.raises(ValueError, match=match):
      splits.check_data_config(_lff_cfg(color_std=value))
  with pytest.raises(ValueError, match="color_std"):
    coloring.colorize_lff(tr["grey"][:2], np.zeros(2, int), np.random.default_rng(0),
                          color_std=-1.0)
  with pytest.raises(TypeError):  # 'lff' has no background or pixel noise to set.
    coloring.colorize(tr["grey"][:2], np.zeros(2, int), np.random.default_rng(0), mode="lff",
                      noise_sigma=0.02)


def test_lff_quotas_by_hand():
  """25 examples of class 3 at rho 0.8, LfF's make_attr_labels by hand: color 3's share 0.8,
  each other's 0.2 / 9; 25 x running sums 0.56, 1.11, 1.67, 21.67, 22.22, 22.78, 23.33, 23.89,
  24.44, 25 round to 1, 1, 2, 22, 22, 23, 23, 24, 24, 25, whose differences are the counts."""
  np.testing.assert_array_equal(splits.color_quotas(25, 3, 0.8, np.arange(10)),
                                [1, 0, 1, 20, 0, 1, 0, 1, 0, 1])
  labels = np.array([3] * 25 + [0] * 7)
  colors = splits.quota_colors(labels, 0.8, np.random.default_rng(0))
  np.testing.assert_array_equal(np.bincount(colors[:25], minlength=10),
                                [1, 0, 1, 20, 0, 1, 0, 1, 0, 1])
  np.testing.assert_array_equal(np.bincount(colors[25:], minlength=10),
                                splits.color_quotas(7, 0, 0.8, np.arange(10)))
  other = splits.quota_colors(labels, 0.8, np.random.default_rng(1))
  assert not np.array_equal(other, colors)  # Which examples: the split's random order.


def test_lff_train_split_holds_each_class_quota_of_conflicting_examples():
  cfg = _lff_cfg(rho_train=0.95)
  tr = splits.get_splits(cfg)["train"]
  for y in range(10):
    rows = tr["labels"] == y
    n = int(rows.sum())
    conflicting = int((~tr["aligned"][rows]).sum())
    assert conflicting == n - splits.color_quotas(n, y, 0.95, np.arange(10))[y], y
    assert abs(conflicting - round(n * 0.05)) <= 1
    np.testing.assert_array_equal(np.bincount(tr["colors"][rows], minlength=10),
                                  splits.color_quotas(n, y, 0.95, np.arange(10)))


# ---------------------------------------------------------------- grayscale

def test_to_grayscale_floors_the_channel_mean():
  img = np.array([[[10, 20, 31], [255, 255, 254], [0, 0, 2]]], np.uint8)
  assert coloring.to_grayscale(img)[0].tolist() == [[20] * 3, [254] * 3, [0] * 3]


@pytest.mark.parametrize("mode", ["foreground", "lff"])
def test_grayscale_splits_are_white_digits_made_grey(mode):
  """Same random draws: every split's images and cf_images are the build with every digit
  painted white, greyed; labels and colors unchanged."""
  cfg = common.data_config("tiny")
  cfg.coloring, cfg.val_unbiased_size = mode, 30
  cfg.palette = [[255, 255, 255]] * 10
  white = splits.build_splits(cfg)
  cfg.palette, cfg.grayscale = None, True
  grey = splits.build_splits(cfg)
  assert splits.coloring_kwargs(cfg)["grayscale"] is True
  assert set(grey) == set(white) == {"train", "test_easy", "test_hard", "val_unbiased"}
  for name, split in grey.items():
    for key in ("images", "cf_images"):
      if key in split:
        np.testing.assert_array_equal(split[key], coloring.to_grayscale(white[name][key]))
        assert np.all(split[key] == split[key][..., :1])
    for key in ("labels", "colors", "aligned"):
      np.testing.assert_array_equal(split[key], white[name][key])
  assert splits.cache_key(cfg) != splits.cache_key(common.data_config("tiny"))


@pytest.mark.parametrize("mode", ["foreground", "lff"])
def test_grayscale_images_carry_no_color(mode):
  """The same digits and random draws under two different color ids give the same grey image
  (greying the colored image would keep each hue's brightness: a color cue)."""
  cfg = common.data_config("tiny")
  cfg.coloring, cfg.grayscale = mode, True
  grey, _ = splits.synthetic_digits(40, np.random.default_rng(0))
  kw = splits.coloring_kwargs(cfg)
  a = coloring.colorize(grey, np.zeros(40, np.int32), np.random.default_rng(1), **kw)
  b = coloring.colorize(grey, np.full(40, 7, np.int32), np.random.default_rng(1), **kw)
  np.testing.assert_array_equal(a, b)
  cfg.grayscale = False
  kw = splits.coloring_kwargs(cfg)
  a = coloring.colorize(grey, np.zeros(40, np.int32), np.random.default_rng(1), **kw)
  b = coloring.colorize(grey, np.full(40, 7, np.int32), np.random.default_rng(1), **kw)
  assert not np.array_equal(coloring.to_grayscale(a), coloring.to_grayscale(b))  # The leak.


# ---------------------------------------------------------------- val_balanced and train grey

def _heldout_cfg(val_balanced_size):
  cfg = common.data_config("tiny")  # 600 synthetic training digits.
  cfg.train_size, cfg.val_size, cfg.val_unbiased_size = 300, 40, 30
  cfg.val_balanced_size = val_balanced_size
  return cfg


def test_val_balanced_leaves_every_other_split_bit_identical():
  without = splits.build_splits(_heldout_cfg(0))
  with_vb = splits.build_splits(_heldout_cfg(200))
  assert splits.SPLIT_NAMES[-1] == "val_balanced" and "val_balanced" not in without
  assert set(with_vb) == set(without) | {"val_balanced"}
  for name in without:
    assert set(with_vb[name]) == set(without[name])
    for key in without[name]:
      np.testing.assert_array_equal(with_vb[name][key], without[name][key], err_msg=name + key)


def test_val_balanced_digits_and_colors():
  """Its digits follow val and val_unbiased in the training order; its colors are rho 0.5 drawn
  from its own generator, the 8th of (seed, i)."""
  cfg = _heldout_cfg(200)
  s = splits.build_splits(cfg)
  train_grey, train_labels = splits.load_grey(cfg, "train")
  order = np.random.default_rng([cfg.seed, 0]).permutation(len(train_labels))
  vb = order[300 + 40 + 30:300 + 40 + 30 + 200]
  np.testing.assert_array_equal(s["val_balanced"]["labels"], train_labels[vb])
  want = splits.assign_colors(train_labels[vb], 0.5, np.random.default_rng([cfg.seed, 7]))
  np.testing.assert_array_equal(s["val_balanced"]["colors"], want)
  assert 0.35 < s["val_balanced"]["aligned"].mean() < 0.65
  # The train split's grey digits are its own, in its order.
  np.testing.assert_array_equal(s["train"]["grey"], train_grey[order[:300]])
  assert s["train"]["grey"].dtype == np.uint8 and "grey" not in s["val_balanced"]
  big = common.data_config("full")
  big.val_balanced_size = 1
  with pytest.raises(ValueError, match="val_balanced_size = 60001 exceeds"):
    splits.check_data_config(big)
  big.val_balanced_size = -1
  with pytest.raises(ValueError, match=">= 0"):
    splits.check_data_config(big)


def test_cache_key_of_a_config_saved_before_the_new_fields():
  """A config without color_std, grayscale and val_balanced_size means their defaults."""
  cfg = common.data_config("tiny")
  old = ml_collections.ConfigDict({k: v for k, v in cfg.to_dict().items()
                                   if k not in splits.FIELD_DEFAULTS})
  assert splits.cache_key(old) == splits.cache_key(cfg)
  splits.check_data_config(old)
  assert splits.coloring_kwargs(old).keys() == splits.coloring_kwargs(cfg).keys()
  for name, value in (("val_balanced_size", 10), ("color_std", 0.01), ("grayscale", True)):
    changed = common.data_config("tiny")
    changed[name] = value
    assert splits.cache_key(changed) != splits.cache_key(cfg), name


# ---------------------------------------------------------------- recoloring in JAX

RECOLOR_CASES = {
    "foreground": dict(coloring="foreground"),
    "foreground_clean": dict(coloring="foreground", noise_sigma=0.0),
    "background": dict(coloring="background"),
    "background_clean": dict(coloring="background", noise_sigma=0.0),
    "lff": dict(coloring="lff", color_std=0.05),
    "lff_exact": dict(coloring="lff", color_std=0.0),
    "foreground_grey": dict(coloring="foreground", grayscale=True),
    "lff_grey": dict(coloring="lff", grayscale=True),
}


def _cfg(case):
  cfg = common.data_config("tiny")
  for k, v in RECOLOR_CASES[case].items():
    cfg[k] = v
  return cfg


def _per_digit(cfg):
  mode = cfg.coloring
  noisy = (cfg.color_std if mode == "lff" else cfg.noise_sigma) > 0
  return coloring.bits_per_digit(mode, noisy)


@pytest.mark.parametrize("case", sorted(RECOLOR_CASES))
def test_recolor_from_bits_reproduces_colorize(case, monkeypatch):
  """On colorize's own bits (one chunk), the JAX recoloring gives its images: exactly when
  called as is, within a level on 1 value in 10^4 inside a larger jit (fusion)."""
  n = 16
  monkeypatch.setattr(coloring, "_CHUNK", n)
  cfg = _cfg(case)
  rng = np.random.default_rng(5)
  grey = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  grey[:, :4] = 0
  grey[:, 4:8] = 255
  colors = rng.integers(0, 10, n).astype(np.int32)
  want = coloring.colorize(grey, colors, np.random.default_rng(6), **splits.coloring_kwargs(cfg))
  bits = _bits(np.random.default_rng(6), n * _per_digit(cfg))
  from_bits = coloring.recolor_from_bits_fn(cfg)
  got = from_bits(grey, colors, bits)
  assert got.dtype == jnp.float32 and got.shape == (n, 28, 28, 3)
  np.testing.assert_array_equal(np.asarray(got), want.astype(np.float32))
  jitted = np.asarray(jax.jit(lambda g, c, b: from_bits(g, c, b) + 0.0)(grey, colors, bits))
  diff = np.abs(jitted - want)
  assert diff.max() <= 1 and np.mean(diff > 0) < 1e-4


@pytest.mark.parametrize("case", ["foreground", "background", "lff", "foreground_grey"])
def test_recolor_fn_matches_colorize_in_distribution(case):
  """Per pixel and channel, the first two moments of many recolorings of one digit (jax.random
  bits) agree with colorize's (numpy bits) within 6 standard errors."""
  n = 2048
  cfg = _cfg(case)
  digit = np.zeros((28, 28), np.uint8)
  digit[6:22, 6:22] = np.linspace(0, 255, 16 * 16).reshape(16, 16).astype(np.uint8)
  grey = np.broadcast_to(digit, (n, 28, 28)).copy()
  colors = np.full(n, 6, np.int32)
  ref = coloring.colorize(grey, colors, np.random.default_rng(8),
                          **splits.coloring_kwargs(cfg)).astype(np.float64)
  recolor = jax.jit(coloring.recolor_fn(cfg))
  got = np.asarray(recolor(grey, colors, jax.random.key(9)), np.float64)
  assert got.min() >= 0 and got.max() <= 255 and np.all(got == np.floor(got))
  center = (ref.mean(0) + got.mean(0)) / 2
  for power in (1, 2):  # Mean, and spread about the pooled mean: each within 6 standard errors.
    a, b = (ref - center) ** power, (got - center) ** power
    se = np.sqrt((a.var(0) + b.var(0)) / n)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) <= 6 * se + 1e-9), power
  assert ref.std(0).max() > 1  # Random in places: the comparison is not of constants only.
  again = np.asarray(recolor(grey, colors, jax.random.key(9)))
  other = np.asarray(recolor(grey, colors, jax.random.key(10)))
  np.testing.assert_array_equal(again, got)
  assert not np.array_equal(other, got)


# ---------------------------------------------------------------- groups and environments

def test_group_ids_and_counts():
  labels = np.array([0, 0, 3, 9, 9, 9])
  aligned = np.array([False, True, True, False, False, True])
  assert groups.NUM_GROUPS == 20
  assert groups.group_ids(labels, aligned).tolist() == [0, 1, 7, 18, 18, 19]
  counts = groups.group_counts(labels, aligned)
  assert counts.shape == (20,) and counts.sum() == 6
  assert counts[[0, 1, 7, 18, 19]].tolist() == [1, 1, 1, 2, 1]
  with pytest.raises(ValueError, match="one length"):
    groups.group_ids(labels, aligned[:3])
  with pytest.raises(ValueError, match=r"\[0, 9\]"):
    groups.group_ids(np.array([10]), np.array([True]))


def _grouped(per_group_counts):
  """labels, aligned with per_group_counts[g] examples of group g, shuffled."""
  ids = np.repeat(np.arange(20), per_group_counts)
  np.random.default_rng(0).shuffle(ids)
  return ids // 2, (ids % 2).astype(bool)


def test_balanced_subset_takes_the_smallest_group_count():
  counts = np.arange(20) + 3  # Group 0 is the smallest, 3 examples.
  labels, aligned = _grouped(counts)
  idx = groups.balanced_subset(labels, aligned, np.random.default_rng(1))
  assert len(idx) == 60 and len(np.unique(idx)) == 60 and np.all(np.diff(idx) > 0)
  assert groups.group_counts(labels[idx], aligned[idx]).tolist() == [3] * 20
  np.testing.assert_array_equal(
      idx, groups.balanced_subset(labels, aligned, np.random.default_rng(1)))
  assert not np.array_equal(idx, groups.balanced_subset(labels, aligned,
                                                        np.random.default_rng(2)))
  two = groups.balanced_subset(labels, aligned, np.random.default_rng(1), per_group=2)
  assert groups.group_counts(labels[two], aligned[two]).tolist() == [2] * 20
  with pytest.raises(ValueError, match=r"smallest group's 3 examples \(label 0, conflicting\)"):
    groups.balanced_subset(labels, aligned, np.random.default_rng(1), per_group=4)
  counts[7] = 0
  labels, aligned = _grouped(counts)
  with pytest.raises(ValueError, match=r"0 examples \(label 3, aligned\)"):
    groups.balanced_subset(labels, aligned, np.random.default_rng(1))


def test_assign_envs_sizes_and_fractions():
  # rho 0.95: 100 of 2000 conflicting; scales (1.5, 0.5) -> 7.5% and 2.5% of 1000 each.
  aligned = np.ones(2000, bool)
  aligned[np.random.default_rng(0).choice(2000, 100, replace=False)] = False
  envs = groups.assign_envs(aligned, (1.5, 0.5), np.random.default_rng(1))
  assert envs.dtype == np.int32 and set(np.unique(envs)) == {0, 1}
  assert np.bincount(envs).tolist() == [1000, 1000]
  assert [int((~aligned[envs == e]).sum()) for e in (0, 1)] == [75, 25]
  np.testing.assert_array_equal(
      envs, groups.assign_envs(aligned, (1.5, 0.5), np.random.default_rng(1)))
  # Uneven sizes: 10 examples, 3 conflicting, 3 envs: sizes 4, 3, 3; targets 1.2, 0.9, 0.9
  # -> floors 1, 0, 0, and the two largest remainders get one more: 1, 1, 1.
  sizes, conflicting = groups.env_conflict_counts(10, 3, (1, 1, 1))
  assert sizes.tolist() == [4, 3, 3] and conflicting.tolist() == [1, 1, 1]
  small = np.array([False] * 3 + [True] * 7)
  envs = groups.assign_envs(small, (1, 1, 1), np.random.default_rng(2))
  assert np.bincount(envs).tolist() == [4, 3, 3]
  assert [int((~small[envs == e]).sum()) for e in range(3)] == [1, 1, 1]
  # All-aligned sets give every environment none.
  envs = groups.assign_envs(np.ones(9, bool), (2.0, 0.5, 0.5), np.random.default_rng(3))
  assert np.bincount(envs).tolist() == [3, 3, 3]


def test_assign_envs_impossible_requests():
  aligned = np.array([False] * 60 + [True] * 40)
  with pytest.raises(ValueError, match="Environment 0 would need 54 .* holds 50"):
    groups.assign_envs(aligned, (1.8, 0.2), np.random.default_rng(0))
  for scales in ((1.0, 0.5), (2.5, -0.5), (), (np.nan, 1.0)):
    with pytest.raises(ValueError, match="conflict_scales"):
      groups.assign_envs(aligned, scales, np.random.default_rng(0))


# ---------------------------------------------------------------- LfF's MLP

def test_lff_mlp_architecture_and_input_scale():
  model = models.get_model("lff_mlp", num_classes=10)
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  shapes = {k: v["kernel"].shape for k, v in params.items()}
  assert shapes == {"Dense_0": (2352, 100), "Dense_1": (100, 100), "Dense_2": (100, 100),
                    "Dense_3": (100, 10)}
  assert models.param_count(params) == 2352 * 100 + 100 + 2 * (100 * 100 + 100) + 1010
  # PyTorch's nn.Linear init: U(+-1/sqrt(fan_in)) for kernel and bias.
  for name, fan_in in (("Dense_0", 2352), ("Dense_3", 100)):
    for p in params[name].values():
      assert np.abs(p).max() <= 1 / np.sqrt(fan_in)
  assert models.layer_shapes(model, params, (28, 28, 3)) == {
      "dense0": (1, 100), "dense1": (1, 100), "dense2": (1, 100)}
  # By hand: LfF's input is pixels / 255 / 255 (ToTensor, then the model's own / 255).
  x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 3)).astype(np.float32)
  h = x.reshape(3, -1) / 255.0 / 255.0
  for i in range(3):
    h = np.maximum(h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"], 0)
  want = h @ params["Dense_3"]["kernel"] + params["Dense_3"]["bias"]
  np.testing.assert_allclose(model.apply({"params": params}, x), want, rtol=1e-5, atol=1e-6)
  dfa = models.get_model("lff_mlp", num_classes=10, hidden=(100, 100, 16))
  dfa_params = models.init_params(dfa, jax.random.key(0), (28, 28, 3))
  assert models.layer_shapes(dfa, dfa_params, (28, 28, 3))["dense2"] == (1, 16)
  assert models.get_model("mlp", num_classes=10).hidden == (256, 256)
