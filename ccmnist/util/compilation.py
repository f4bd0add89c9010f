"""XLA's persistent compilation cache: a program compiled once is loaded, not compiled, the next
time any run (a resumed one, another ratio, another workdir) builds the same program."""

import os
import pathlib

import jax

ENV = "CCMNIST_COMPILATION_CACHE"


def default_dir() -> pathlib.Path:
  """$CCMNIST_COMPILATION_CACHE, else JAX's own $JAX_COMPILATION_CACHE_DIR, else xla/ under the
  data cache ($CCMNIST_CACHE or ~/.cache/ccmnist)."""
  for name in (ENV, "JAX_COMPILATION_CACHE_DIR"):
    if os.environ.get(name):
      return pathlib.Path(os.environ[name]).expanduser()
  return pathlib.Path(os.environ.get("CCMNIST_CACHE", "~/.cache/ccmnist")).expanduser() / "xla"


def use_cache(path) -> None:
  """Keeps every compiled program in `path`, however fast it compiled (a process-wide setting:
  the entrypoint's choice). XLA keys an entry by the program, its options and the backend, so a
  changed program or device compiles anew. JAX's own environment variables for the two
  thresholds, when set, are kept."""
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", str(path))
  for name in ("jax_persistent_cache_min_compile_time_secs",
               "jax_persistent_cache_min_entry_size_bytes"):
    if name.upper() not in os.environ:
      jax.config.update(name, 0)
  compilation_cache.reset_cache()
