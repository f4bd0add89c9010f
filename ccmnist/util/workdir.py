"""A workdir belongs to one config and one process at a time.

config.json is written once and checked on every resume. While a process works in a workdir it
holds an exclusive lock of DIR/.lock (`fcntl.flock` on an open file descriptor): the kernel
releases it when the process exits or dies, so a dead holder's lock is stale by construction and
the next claim takes it over. The file itself only records who holds it (pid, host, start time,
command) for the message a second process gets; it is never replaced or deleted, since the lock
lives on its inode. flock is reliable on local file systems; on NFS it depends on the mount.
"""

import atexit
import fcntl
import json
import os
import pathlib
import socket
import sys
import time

from absl import logging
import ml_collections

from ccmnist.util import io

LOCK_FILE = ".lock"

# Workdirs this process holds: real path -> [file descriptor, claim depth].
_HELD = {}


class WorkdirConfigError(ValueError):
  """The workdir holds a run of a different config."""


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir."""


def config_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


# Settings that decide what a run logs, never what it computes, compared nowhere: runs that
# differ only in them resume one another (train.grad_norm: whether the step's metrics hold the
# gradient norm; the update is the same either way).
UNCOMPARED = ("grad_norm",)


def diff_configs(a: dict, b: dict, prefix="", ignore: tuple = ()) -> list:
  """'key: a (workdir) vs b (now)' for every key, at any depth, where two configs differ (but
  those named in UNCOMPARED, and the top-level keys in `ignore`)."""
  out = []
  for k in sorted((set(a) | set(b)) - set(UNCOMPARED) - set(ignore)):
    va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
    if isinstance(va, dict) and isinstance(vb, dict):
      out += diff_configs(va, vb, f"{prefix}{k}.")
    elif va != vb:
      out.append(f"{prefix}{k}: {va!r} (workdir) vs {vb!r} (now)")
  return out


def _duration(seconds: float) -> str:
  seconds = max(0, int(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m {seconds % 60}s"
  return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def _read_holder(fd: int) -> dict:
  """What the lock file says about its holder ({} when empty or unreadable)."""
  try:
    return json.loads(os.pread(fd, 1 << 16, 0).decode() or "{}")
  except (OSError, ValueError):
    return {}


def _holder_text(holder: dict) -> str:
  if not holder:
    return "another process (it has not recorded its pid yet)"
  command = holder.get("command", "?")
  command = command if len(command) <= 120 else command[:117] + "..."
  return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} for "
          f"{_duration(time.time() - holder.get('time', time.time()))} (`{command}`)")


def lock_workdir(workdir) -> pathlib.Path:
  """Takes the exclusive lock of DIR/.lock, or raises WorkdirBusyError naming its holder.

  Re-entrant: a process that holds the workdir may claim it again (each claim is matched by one
  release_workdir). A lock left by a process that died is taken over.
  """
  workdir = pathlib.Path(workdir)
  key = os.path.realpath(workdir)
  if key in _HELD:
    _HELD[key][1] += 1
    return workdir
  path = workdir / LOCK_FILE
  with io.explained_write_errors(path):
    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _read_holder(fd)
    os.close(fd)
    raise WorkdirBusyError(
        f"{workdir} is in use by {_holder_text(holder)}; wait for it to finish or stop it, or "
        "use another --workdir.") from None
  previous = _read_holder(fd)  # A clean release empties the file: what is left is stale.
  if previous:
    logging.warning("Taking over the lock of %s: %s is gone.", workdir, _holder_text(previous))
  info = dict(pid=os.getpid(), host=socket.gethostname(), time=time.time(),
              command=" ".join([os.path.basename(sys.executable), *sys.argv]))
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(info).encode(), 0)
  _HELD[key] = [fd, 1]
  return workdir


def release_workdir(workdir) -> None:
  """Undoes one claim_workdir (or lock_workdir) of this process; the last one frees the lock.

  A workdir this process does not hold is left alone.
  """
  key = os.path.realpath(workdir)
  held = _HELD.get(key)
  if held is None:
    return
  held[1] -= 1
  if held[1] > 0:
    return
  del _HELD[key]
  fd = held[0]
  try:
    os.ftruncate(fd, 0)  # Empty: the next holder knows this one left cleanly.
  except OSError:
    pass
  fcntl.flock(fd, fcntl.LOCK_UN)
  os.close(fd)


@atexit.register
def _release_all() -> None:
  """At a normal exit (even by an exception), every lock this process holds is released
  cleanly; only a process that is killed leaves a stale one."""
  for key in list(_HELD):
    _HELD[key][1] = 1
    release_workdir(key)


def holds_workdir(workdir) -> bool:
  """Whether this process holds the workdir's lock."""
  return os.path.realpath(workdir) in _HELD


def _check_config(path: pathlib.Path, text: str, ignore: tuple) -> None:
  """Raises WorkdirConfigError unless the config.json at path is the config `text`."""
  try:
    old = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise WorkdirConfigError(f"{path} is not valid JSON ({e}); use a new --workdir.") from e
  diff = diff_configs(old, json.loads(text), ignore=ignore)
  if diff:
    more = f"; and {len(diff) - 5} more" if len(diff) > 5 else ""
    raise WorkdirConfigError(
        f"{path.parent} holds a run of a different config ({'; '.join(diff[:5])}{more}); use a "
        "new --workdir, or rerun with the same config to resume.")


def claim_workdir(config, workdir, *, ignore: tuple = (), writer: bool = True) -> pathlib.Path:
  """Locks the workdir (lock_workdir), then writes config.json or checks the one there.

  ignore: top-level keys that select what to run rather than what is computed (the study's
  `only`): they may differ between runs on one workdir.
  writer: False for the processes of a multi-process run other than process 0: they only
  check an existing config.json, take no lock and write nothing.
  Each claim with writer=True is undone by one release_workdir.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / "config.json"
  text = config_json(config)
  if not writer:
    if path.exists():
      _check_config(path, text, ignore)
    return workdir
  lock_workdir(workdir)
  try:
    if path.exists():
      _check_config(path, text, ignore)
    else:
      io.write_text(path, text)
  except BaseException:
    release_workdir(workdir)
    raise
  return workdir


def load_config(workdir, *, kind: str = "training") -> ml_collections.ConfigDict:
  """The config.json of a workdir, as a ConfigDict."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a {kind} workdir; pass the "
                            f"--workdir of a {kind} run.")
  return ml_collections.ConfigDict(json.loads(path.read_text()))
