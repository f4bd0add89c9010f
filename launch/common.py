"""What every entrypoint shares: readable logging, and errors of bad input as one line.

  if __name__ == "__main__":
    common.run(main)
"""

import logging as py_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ccmnist.data import mnist
from ccmnist.report import markdown
from ccmnist.train import loop
from ccmnist.train import parallel
from ccmnist.train import runs
from ccmnist.util import compilation
from ccmnist.util import io
from ccmnist.util import workdir

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "On an error of bad input (a bad config value, a missing or corrupt file, "
    "a busy workdir), print its traceback too, not just the one-line message.")

_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", None, "Where compiled programs are kept, so that a run of the same "
    f"shapes (resumed, another ratio or workdir) compiles nothing: default ${compilation.ENV}, "
    "else xla/ under the data cache ($CCMNIST_CACHE or ~/.cache/ccmnist); '' turns it off.")

# What bad input, a bad file or a busy or unwritable workdir raise; anything else is a bug and
# keeps its traceback. (OSError covers FileNotFoundError and io.WriteError; ValueError covers
# workdir.WorkdirConfigError.)
KNOWN_ERRORS = (ValueError, OSError, mnist.MnistError, workdir.WorkdirBusyError,
                loop.NonFiniteLossError, runs.CheckpointError, parallel.PeerError)


class _DropChatter(py_logging.Filter):
  """Hides orbax's per-save INFO lines so progress lines stay readable, and the tracebacks its
  background threads log with an error (the error itself reaches main, which reports it)."""

  def filter(self, record):
    if "orbax" not in record.pathname:
      return True
    if record.levelno >= py_logging.ERROR and not _VERBOSE.value:
      record.exc_info, record.exc_text = None, None
    return record.levelno >= py_logging.WARNING


def setup_logging():
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_DropChatter())


def error_line(e: BaseException) -> str:
  """`error: <message>` on one line."""
  message = str(e)
  # TensorStore (orbax's checkpoint writes) reports a file-system error as a ValueError that
  # carries its errno as os_error_code='N'.
  code = re.search(r"os_error_code='(\d+)'", message)
  if code and not isinstance(e, OSError):
    e = OSError(int(code[1]), message)
  if isinstance(e, OSError) and not isinstance(e, io.WriteError) and io.how_to_fix(e):
    message = f"{message}: {io.how_to_fix(e)}"
  return "error: " + " ".join(line.strip() for line in message.splitlines() if line.strip())


def write_error_line(line: str):
  """Writes line to stderr in one system call, on a line of its own: threads of the checkpoint
  library may still be printing their own noise, a piece at a time."""
  try:
    fd = sys.stderr.fileno()
  except (AttributeError, ValueError, OSError):  # A stream with no file (a captured one).
    print(line, file=sys.stderr, flush=True)
    return
  sys.stderr.flush()
  os.write(fd, f"\n{line}\n".encode())


def _flag_error_line(e: Exception, argv) -> str:
  """One line for an error while parsing the command line."""
  if isinstance(e, (AttributeError, KeyError)):  # ml_collections: an override of no field.
    while e.args and isinstance(e.args[0], Exception):
      e = e.args[0]
    detail = str(e.args[0]) if e.args else ""
    name, _, hint = detail.partition("\n")
    name = name.strip("'\"")
    given = next((a.split("=")[0] for a in argv[1:] if a.startswith("--") and
                  a.split("=")[0].endswith("." + name)), name)
    return " ".join(["error:", f"{given} names no field of the config.", hint.strip(),
                     "Check its spelling against the config file."]).replace("  ", " ")
  message = str(e)
  if "Traceback" in message:  # config_flags quotes the config file's traceback: keep its ends.
    head, _, tail = message.partition("Traceback")
    last = [line.strip() for line in tail.splitlines() if line.strip()][-1]
    message = f"{head.strip().rstrip(':')}: {last}"
  return error_line(Exception(message)) + " (--helpshort lists the flags)"


def _parse_flags(argv):
  """absl's flag parsing, where a bad flag or config override prints one line and exits 2."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    if "--verbose" in argv:
      raise
    print(_flag_error_line(e, argv), file=sys.stderr, flush=True)
    sys.exit(2)


def define_config_file(name: str, default: str):
  """config_flags.DEFINE_config_file(name, default, lock_config=True), where an override that
  names no field of the config prints one line and exits 2 (ml_collections checks the overrides
  on the command line as it defines the flag)."""
  try:
    return config_flags.DEFINE_config_file(name, default, lock_config=True)
  except (AttributeError, KeyError) as e:
    if "--verbose" in sys.argv:
      raise
    print(_flag_error_line(e, sys.argv), file=sys.stderr, flush=True)
    sys.exit(2)


# Flags that choose how or where a run goes, not what it computes: left out of command.json.
_NOT_COMPUTED = ("--workdir", "--config.only", "--share_workdir", "--compilation_cache",
                 "--verbose", "--noverbose", "--keep", "--analyse_as_trained",
                 "--noanalyse_as_trained")
_WITH_VALUE = ("--workdir", "--config.only", "--compilation_cache", "--keep")


def command(module: str) -> str:
  """The command that makes this process's config: `python -m module` and the config flags
  given, less those of _NOT_COMPUTED (for the report to print)."""
  args, skip = [], False
  for a in sys.argv[1:]:
    if skip:  # The value of `--workdir DIR` written apart.
      skip = False
    elif a.split("=")[0] in _NOT_COMPUTED:
      skip = "=" not in a and a in _WITH_VALUE
    else:
      args.append(a)
  return " ".join(["python", "-m", module, *args, "--workdir=DIR"])


def _use_compilation_cache():
  """The entrypoint's persistent compilation cache (--compilation_cache), on unless ''."""
  path = _COMPILATION_CACHE.value
  if path != "":
    compilation.use_cache(compilation.default_dir() if path is None else path)


def _one_line_errors(main):
  def wrapped(argv):
    try:
      _use_compilation_cache()
      return main(argv)
    except KNOWN_ERRORS as e:
      if _VERBOSE.value or flags.FLAGS["pdb_post_mortem"].value:
        raise
      logging.flush()
      write_error_line(error_line(e))
      sys.exit(2)
  return wrapped


def run(main):
  """app.run(main), where a known error (KNOWN_ERRORS), or a bad flag or config override, prints
  `error: <message>` to stderr and exits with status 2, without a traceback unless --verbose (or
  --pdb_post_mortem) is given."""
  markdown.code_version()  # The commit this process loaded, before any later one is made.
  app.run(_one_line_errors(main), flags_parser=_parse_flags)
