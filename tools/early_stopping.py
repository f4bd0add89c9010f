"""What early stopping would change in a finished benchmark's numbers, read from its runs' logs
(ccmnist/zoo/early_stop.py says how): the whole table, a row per run with the epoch each seed
stops at; benchmark.md carries its summary.

  python tools/early_stopping.py docs/results/benchmark_lff/final [--markdown=OUT.md]
"""

import argparse
import pathlib
import sys
import time

from ccmnist.report import markdown as markdown_lib
from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import collect
from ccmnist.zoo import early_stop


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("folder", help="A benchmark folder kept by launch.zoo --keep (or its workdir).")
  p.add_argument("--markdown", default="", help="Also write the table here.")
  p.add_argument("--json_out", default="", help="Also write the records here.")
  a = p.parse_args(argv)
  folder = pathlib.Path(a.folder)
  if not (folder / "selection.json").exists():
    raise SystemExit(f"{folder} holds no selection.json; name a benchmark folder whose select "
                     "stage has run.")
  bench = workdir_lib.load_config(folder, kind="benchmark")
  recs = early_stop.rows(bench, folder, collect.read_selection(folder))
  code = io.read_json(folder / "results.json", default={}).get("environment", {}).get(
      "code", "unrecorded")
  args = " ".join(sys.argv[1:] if argv is None else argv)
  made_by = (f"Made by `python tools/early_stopping.py {args}` on {time.strftime('%Y-%m-%d')} "
             f"(code {markdown_lib.code_version()}), from a benchmark report made on code {code}.")
  text = "\n".join(["# Early stopping, read from the training logs", "",
                    early_stop.intro(recs), "", *early_stop.table_lines(recs, bench), made_by,
                    ""])
  print(text)
  if a.markdown:
    io.write_text(a.markdown, text)
  if a.json_out:
    io.write_json(a.json_out, recs, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
