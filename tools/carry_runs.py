"""Keeps a benchmark's finished runs in a folder, and resumes a benchmark from them elsewhere.

  python tools/carry_runs.py save WORKDIR FOLDER      # after runs finish (any time: it reads)
  python tools/carry_runs.py restore FOLDER WORKDIR   # then: python -m launch.zoo ... WORKDIR

save copies each finished run's files less its parameters and predictions (ccmnist/zoo/carry.py
says which), after measuring it as the evaluate stage does; restore copies them back, leaving out
the runs whose parameters a stage still to run reads (they train again: the same seeds give the
same run). Pass --no-analyse to restore when the benchmark will not run its analyse stage
(--config.only without it): runs without an analysis.json are then restored too. Prints what it
saved, restored and left out, as JSON.
"""

import argparse
import sys

from ccmnist.zoo import carry


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("action", choices=("save", "restore"))
  parser.add_argument("source", help="save: the benchmark workdir; restore: the folder")
  parser.add_argument("dest", help="save: the folder; restore: the benchmark workdir")
  parser.add_argument("--analyse", action=argparse.BooleanOptionalAction, default=True,
                      help="restore: whether the benchmark will run its analyse stage")
  args = parser.parse_args(argv)
  try:
    if args.action == "save":
      out = carry.save(args.source, args.dest)
    else:
      out = carry.restore(args.source, args.dest, analyse=args.analyse)
  except (ValueError, FileNotFoundError) as e:
    print(f"carry_runs.py: {e}", file=sys.stderr)
    return 2
  print(carry.as_json(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
