"""Markdown pieces both reports write (the study's report.md, the zoo's benchmark.md), and the
software and device they describe."""

import functools
import pathlib
import platform
import subprocess

import jax
import numpy as np


def fmt(stat, *, pct=True, digits=1) -> str:
  """'85.2' or '85.2 ± 1.3' (percent) from a mean_std dict or a number; 'n/a' for none."""
  if stat is None:
    return "n/a"
  if not isinstance(stat, dict):
    stat = {"mean": stat, "std": 0.0, "n": 1}
  if stat["mean"] is None:
    return "n/a"
  k = 100.0 if pct else 1.0
  text = f"{k * stat['mean']:.{digits}f}"
  if stat.get("n", 1) > 1:
    text += f" ± {k * stat['std']:.{digits}f}"
  return text


def vs(ours, claim, **kw) -> str:
  """'ours (study: claim)', or fmt(ours) alone when the study claims nothing here."""
  return f"{fmt(ours, **kw)} (study: {fmt(claim, **kw)})" if claim is not None else fmt(ours, **kw)


def mean_percent(values) -> str:
  """'85.2%': the mean of per-seed fractions; 'n/a' for none."""
  return "n/a" if values is None else f"{100 * float(np.mean(values)):.1f}%"


def percent(ratio: float) -> str:
  """'5%', '0.5%': a fraction as the shortest percentage."""
  return f"{100 * ratio:g}%"


def table(header, rows) -> list:
  """The lines of a markdown table, and the blank line after it."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def heading(title: str, intro: str) -> list:
  """A level-2 heading and the paragraph under it."""
  return [f"## {title}", "", intro, ""]


def figure(workdir, rel: str, caption: str) -> list:
  """An embedded figure and its caption, or nothing when workdir/rel does not exist."""
  if not (pathlib.Path(workdir) / rel).exists():
    return []
  return [f"![{caption}]({rel})", f"*{caption}*", ""]


def code_version() -> str:
  """The git commit of the code that runs ('abc1234', '+ local changes' when the checkout
  differs from it), or 'unknown' outside a git checkout: read once per process, so that a long
  process names the code it loaded, not the commits made while it ran (entrypoints read it at
  start, launch/common.py)."""
  return checkout_version(pathlib.Path(__file__).resolve().parents[2])


@functools.cache
def checkout_version(root: pathlib.Path) -> str:
  """code_version of the git checkout at `root`, the first time it is asked for."""
  git = lambda *args: subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                     text=True, timeout=30, check=False)
  try:
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
      return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "ccmnist", "configs",
                "launch").stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return head.stdout.strip() + (" + local changes" if dirty else "")


def device_name(dev) -> str:
  """'gpu NVIDIA H100 80GB HBM3', or 'cpu' where the kind only repeats the platform."""
  kind = str(dev.device_kind)
  return dev.platform if kind.lower() == dev.platform.lower() else f"{dev.platform} {kind}"


def environment() -> dict:
  """The versions, platform and device this report was made with, and the code's commit."""
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "python": platform.python_version(), "platform": platform.platform(),
          "device": device_name(dev), "device_count": jax.device_count(),
          "code": code_version()}


def environment_lines(env: dict, generated: str) -> list:
  """The list items naming the software, the device and when the report was generated."""
  code = [f"- code: commit {env['code']}."] if env.get("code") else []
  return [*code,
          f"- jax {env['jax']}, flax {env['flax']}, optax {env['optax']}, Python "
          f"{env['python']}, {env['device']} x{env['device_count']}, {env['platform']}.",
          f"- generated {generated}.", ""]


def stage_table(stages: dict) -> list:
  """Each stage's wall time (stages.json) and their total, as a table."""
  rows = [[s, f"{t['seconds']:.1f}"] for s, t in stages.items()]
  total = sum(t["seconds"] for t in stages.values())
  return table(["stage", "wall time (s)"], rows + [["total", f"{total:.1f}"]])
