"""Replicas of a run: K = seeds x lambda grid points, trained in one program.

Replica r = (grid point g, seed s) with r = g * num_seeds + s; its init and data order come from
jax.random.key(config.seed + s), so replica r equals a single run with seed config.seed + s and
lambda grid[g]; grid points share seeds, which makes lambda comparisons paired. Reads only the
config: no method, no workdir.
"""


def lam_grid(config) -> tuple:
  """The lambda of each grid point: config.loss.lam_grid, or (config.loss.lam,)."""
  return tuple(float(x) for x in (config.loss.lam_grid or (config.loss.lam,)))


def replicas(config) -> list:
  """[{'replica', 'seed', 'lam'}] for every replica of a run."""
  if config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be >= 1; got {config.num_seeds}.")
  return [{"replica": g * config.num_seeds + s, "seed": config.seed + s, "lam": lam}
          for g, lam in enumerate(lam_grid(config)) for s in range(config.num_seeds)]


def replica_of(config, lam: float, seed_index: int = 0) -> int:
  """The replica index of grid point `lam` and the seed_index-th seed."""
  grid = lam_grid(config)
  if lam not in grid:
    raise ValueError(f"lambda {lam} is not in the run's lambda grid {grid}.")
  return grid.index(lam) * config.num_seeds + seed_index


def headline_lam(config) -> float:
  """The grid point a run's headline numbers stand for: config.loss.lam when the grid holds it
  (a method's own setting), else the grid's first point."""
  grid = lam_grid(config)
  return float(config.loss.lam) if config.loss.lam in grid else grid[0]
