"""Writes inferred_split.json for the finished JTT and EIIL runs of a benchmark workdir that
trained before runs wrote it (ccmnist/train/loop.py write_inferred_split), and copies each into
the kept folder of the benchmark (launch.zoo --keep) when one is named. The reference runs must
still hold their checkpoints and predictions, so run it on the workdir, not on a kept folder.
Nothing is trained; a run that has the file already is left alone.

  python tools/inferred_split.py WORKDIR [--keep=FOLDER]
"""

import argparse
import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from ccmnist.train import loop  # noqa: E402
from ccmnist.train import runs  # noqa: E402


def backfill(workdir, keep=None) -> list:
  """The run dirs (relative to workdir) given an inferred_split.json, copied under keep too."""
  workdir, done = pathlib.Path(workdir), []
  for config in sorted((workdir / "runs").glob("**/config.json")):
    rdir = config.parent
    if loop.inferred_split_of_finished(rdir):
      done.append(rdir.relative_to(workdir))
    if keep is not None and (rdir / runs.INFERRED_SPLIT_FILE).exists():
      target = pathlib.Path(keep) / rdir.relative_to(workdir)
      if target.is_dir() and not (target / runs.INFERRED_SPLIT_FILE).exists():
        shutil.copyfile(rdir / runs.INFERRED_SPLIT_FILE, target / runs.INFERRED_SPLIT_FILE)
  return done


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="a benchmark workdir (launch.zoo --workdir)")
  parser.add_argument("--keep", default=None, help="its kept folder (launch.zoo --keep)")
  args = parser.parse_args(argv)
  if not (pathlib.Path(args.workdir) / "runs").is_dir():
    sys.exit(f"{args.workdir} has no runs/: name a benchmark workdir (launch.zoo --workdir).")
  for rel in backfill(args.workdir, args.keep):
    print(f"wrote {rel}/{runs.INFERRED_SPLIT_FILE}")


if __name__ == "__main__":
  main()
