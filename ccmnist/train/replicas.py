"""Replicas of a run: K = seeds x grid points, trained in one program.

A grid point is a lambda of config.loss.lam_grid, or a learning rate of config.optim.lr_grid
(one grid at a time: a run with an lr grid has one lambda). Replica r = (grid point g, seed s)
with r = g * num_seeds + s; its init and data order come from jax.random.key(config.seed + s),
so replica r equals a single run with seed config.seed + s at grid point g's lambda and learning
rate; grid points share seeds, which makes comparisons between them paired. Reads only the
config: no method, no workdir.
"""


def lam_grid(config) -> tuple:
  """The lambda of each lambda-grid point: config.loss.lam_grid, or (config.loss.lam,)."""
  return tuple(float(x) for x in (config.loss.lam_grid or (config.loss.lam,)))


def has_lr_grid(config) -> bool:
  """Whether the run trains an lr grid (config.optim.lr_grid, a field only such runs have)."""
  return bool(config.optim.get("lr_grid"))


def lr_grid(config) -> tuple:
  """The learning rate of each lr-grid point: config.optim.lr_grid, or (config.optim.lr,)."""
  return tuple(float(x) for x in (config.optim.get("lr_grid") or (config.optim.lr,)))


def check_grid(config) -> None:
  """One grid at a time, and learning rates > 0."""
  if has_lr_grid(config) and len(lam_grid(config)) > 1:
    raise ValueError(f"config.optim.lr_grid {lr_grid(config)} and config.loss.lam_grid "
                     f"{lam_grid(config)} are both set; give one grid and a single lambda.")
  if any(lr <= 0 for lr in lr_grid(config)):
    raise ValueError(f"learning rates must be > 0; got config.optim.lr_grid {lr_grid(config)}.")


def grid_points(config) -> list:
  """[{'lam'}] per lambda-grid point, or [{'lam', 'lr'}] per lr-grid point."""
  check_grid(config)
  if not has_lr_grid(config):
    return [{"lam": lam} for lam in lam_grid(config)]
  return [{"lam": lam_grid(config)[0], "lr": lr} for lr in lr_grid(config)]


def replicas(config) -> list:
  """[{'replica', 'seed', 'lam'} (and 'lr' with an lr grid)] for every replica of a run."""
  if config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be >= 1; got {config.num_seeds}.")
  return [{"replica": g * config.num_seeds + s, "seed": config.seed + s, **point}
          for g, point in enumerate(grid_points(config)) for s in range(config.num_seeds)]


def headline_lr(config) -> float:
  """The lr-grid point a run's headline numbers stand for: config.optim.lr when the grid holds
  it, else the grid's first point."""
  grid = lr_grid(config)
  return float(config.optim.lr) if config.optim.lr in grid else grid[0]


def point_index(config, lam: float, lr: float | None = None) -> int:
  """The grid point at `lam` and, with an lr grid, `lr` (default the headline lr)."""
  want = {"lam": lam}
  if has_lr_grid(config):
    want["lr"] = headline_lr(config) if lr is None else lr
  points = grid_points(config)
  if want not in points:
    raise ValueError(f"{want} is not a point of the run's grid {points}.")
  return points.index(want)


def replica_of(config, lam: float, seed_index: int = 0, *, lr: float | None = None) -> int:
  """The replica index of grid point (`lam`, `lr`) and the seed_index-th seed."""
  if lam not in lam_grid(config):
    raise ValueError(f"lambda {lam} is not in the run's lambda grid {lam_grid(config)}.")
  return point_index(config, lam, lr) * config.num_seeds + seed_index


def headline_lam(config) -> float:
  """The grid point a run's headline numbers stand for: config.loss.lam when the grid holds it
  (a method's own setting), else the grid's first point."""
  grid = lam_grid(config)
  return float(config.loss.lam) if config.loss.lam in grid else grid[0]


def headline_index(config) -> int:
  """The grid point of a run's headline numbers (headline_lam, and headline_lr with an lr
  grid)."""
  return point_index(config, headline_lam(config))
