"""The persistent compilation cache's location and switch."""

import jax

from ccmnist.util import compilation


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_own"))
  assert compilation.default_dir() == tmp_path / "jax_own"
  monkeypatch.setenv(compilation.ENV, str(tmp_path / "xla_here"))
  assert compilation.default_dir() == tmp_path / "xla_here"
  monkeypatch.delenv(compilation.ENV)
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path / "data"))
  assert compilation.default_dir() == tmp_path / "data" / "xla"


def test_a_second_compile_of_one_program_is_a_cache_hit(tmp_path):
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  try:
    compilation.use_cache(tmp_path)
    f = lambda x: jax.numpy.tanh(x) * 3.0 + 1.0
    jax.jit(f).lower(jax.numpy.ones(7)).compile()
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries, "nothing was written to the cache"
    jax.jit(lambda x: f(x)).lower(jax.numpy.ones(7)).compile()  # Same HLO: no new entry.
    assert sorted(p.name for p in tmp_path.iterdir()) == entries
  finally:
    for n, v in old.items():
      jax.config.update(n, v)
    from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
    compilation_cache.reset_cache()
