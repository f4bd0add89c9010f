"""Keeps a benchmark's finished runs in a folder, and resumes a benchmark from them elsewhere.

  python tools/carry_runs.py save WORKDIR FOLDER      # after runs finish (any time: it reads)
  python tools/carry_runs.py restore FOLDER WORKDIR   # then: python -m launch.zoo ... WORKDIR
  python tools/carry_runs.py status FOLDER [--measured=RESULTS_JSON]   # how far, how long left

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
  parser.add_argument("action", choices=("save", "restore", "status"))
  parser.add_argument("source", help="save: the benchmark workdir; restore, status: the folder")
  parser.add_argument("dest", nargs="?", help="save: the folder; restore: the benchmark workdir")
  parser.add_argument("--measured", help="status: price the runs left at the rates of this "
                      "benchmark workdir or results.json (default: the folder's own runs)")
  parser.add_argument("--analyse", action=argparse.BooleanOptionalAction, default=True,
                      help="restore: whether the benchmark will run its analyse stage")
  args = parser.parse_args(argv)
  if args.action != "status" and not args.dest:
    parser.error(f"{args.action} needs a destination: {args.action} SOURCE DEST")
  try:
    if args.action == "status":
      out = carry.status(args.source, measured=args.measured)
      left = out["left_projected_s"]
      print(f"{len(out['finished'])} of {len(out['finished']) + len(out['left'])} runs finished "
            f"({out['wall_s'] / 3600:.2f} h measured); left: "
            + (f"{left / 3600:.2f} h projected" if left is not None else "not priced")
            + (f", {len(out['unpriced'])} runs unpriced" if out["unpriced"] else ""))
    elif args.action == "save":
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
