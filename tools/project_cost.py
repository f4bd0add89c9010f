"""What a benchmark config would cost here, priced at the rates a finished benchmark measured.

A run too long to start blind (the second step of the tuned benchmark, tools/tuned_overrides.py)
gets its projection before it starts, from the costs its tuning run measured:

  python tools/project_cost.py --measured=TUNE --config=configs/zoo.py:full \\
      --config.run_protocols=lff $(python tools/tuned_overrides.py TUNE)

--measured is a benchmark workdir (or a folder kept by launch.zoo --keep), or the results.json
of a finished one (its cost.measured records: a published run's rates price another config).

--against=FOLDER sets the projection beside what the config's runs measured once they ran
(their wall time over every call, benchmark_time.json, in a workdir or a kept folder), run by
run and summed over those finished.

It prices the config's own runs (not its project_to) with zoo/cost.py's model: a run's fixed
seconds plus its training examples at the steady examples/s measured for its model and method.
A rate is measured at the measuring run's replica count; a run with more or fewer replicas is
priced at that rate per example.
"""

import sys
import time

from absl import flags

from ccmnist.report import markdown
from ccmnist.util import io
from ccmnist.zoo import collect
from ccmnist.zoo import cost as cost_lib
from launch import common

_CONFIG = common.define_config_file("config", "configs/zoo.py:full")
_MEASURED = flags.DEFINE_string("measured", None, "Workdir of a benchmark (finished or not) "
                                "whose runs' measured costs price the config.", required=True)
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the projection here (JSON).")
_AGAINST = flags.DEFINE_string("against", None, "Workdir (or kept folder) of the config's own "
                               "runs: set each finished run's wall time beside its projection.")


def _print_against(got: dict) -> None:
  rows = [[key, f"{p:.0f}", f"{m:.0f}", f"{m / p:.2f}"] for key, p, m in got["rows"]]
  print("\n".join(markdown.table(["run", "projected s", "measured s", "measured / projected"],
                                 rows)))
  ratio = got["measured_s"] / got["projected_s"] if got["projected_s"] else float("nan")
  print(f"{got['finished']} runs finished: measured {got['measured_s'] / 3600:.2f} h against "
        f"{got['projected_s'] / 3600:.2f} h projected for them ({ratio:.2f}x); the rest is "
        f"projected at {got['left_s'] / 3600:.2f} h")


def main(argv):
  del argv
  measured = collect.measured_costs_of(_MEASURED.value)
  if not measured:
    raise ValueError(f"{_MEASURED.value} has no finished run to measure a rate from.")
  got = cost_lib.project(measured, collect.planned_runs(_CONFIG.value, own=True))
  got["measured_from"] = str(_MEASURED.value)
  got["command"] = " ".join(sys.argv)
  got["generated"], got["code"] = time.strftime("%Y-%m-%d %H:%M:%S"), markdown.code_version()
  print(f"{got['priced']} of {got['runs']} runs priced: {got['total_s'] / 3600:.1f} h")
  for model, s in sorted(got["by_model"].items()):
    print(f"  {model}: {s / 3600:.1f} h")
  for key, rate in sorted(got["rates"].items()):
    print(f"  measured {key}: {rate:,.0f} examples/s")
  if got["unpriced"]:
    print(f"unpriced (no measured rate): {', '.join(got['unpriced'])}")
  if _AGAINST.value:
    walls = cost_lib.walls_of(_AGAINST.value)
    if not walls:
      raise ValueError(f"{_AGAINST.value} holds no finished run (runs/*/*/*/*/"
                       f"{cost_lib.TIME_FILE}); name the config's benchmark workdir or kept "
                       "folder.")
    got["against"] = cost_lib.against(got["by_run"], walls)
    got["against"]["folder"] = str(_AGAINST.value)
    _print_against(got["against"])
  if _JSON_OUT.value:
    io.write_json(_JSON_OUT.value, got, indent=1)
  return 0


if __name__ == "__main__":
  common.run(main)
