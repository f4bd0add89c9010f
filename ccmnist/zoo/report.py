"""The benchmark's results.json and benchmark.md, from what its stages wrote (plan.py's layout).

collect.py reads every run once, findings.py compares runs that differ in one thing, and
sections.py writes benchmark.md from both; write_report runs the three in that order.
"""

import pathlib

from ccmnist import plots
from ccmnist.plots import zoo as zoo_plots
from ccmnist.util import io
from ccmnist.zoo import analyse as analyse_lib
from ccmnist.zoo import collect as collect_lib
from ccmnist.zoo import entries
from ccmnist.zoo import findings as findings_lib
from ccmnist.zoo import sections
from ccmnist.zoo import shortcut

# The names the stages and tests know this module by.
FAILED_FILE, SELECTION_FILE = collect_lib.FAILED_FILE, collect_lib.SELECTION_FILE
read_selection = collect_lib.read_selection
method_of = entries.method_of
compare, statement, cell_unbiased = findings_lib.compare, sections.statement, sections.cell_unbiased


def collect(bench, workdir) -> dict:
  """results.json's dict: every run's record (collect.py) and the findings on them."""
  res = collect_lib.collect(bench, workdir)
  res["analysis"] = analyse_lib.collect(bench, workdir)
  res["findings"] = findings_lib.findings(res, bench)
  return res


def write_report(bench, workdir, *, figure: bool = True) -> dict:
  """Writes DIR/results.json, DIR/benchmark.md and (figure) DIR/figures/; returns results.json's
  dict."""
  workdir = pathlib.Path(workdir)
  res = collect(bench, workdir)
  if figure:
    fig = zoo_plots.accuracy_vs_ratio_figure(sections.figure_panels(res, bench),
                                             titles=entries.titles_of(bench),
                                             ylabel="group-balanced test accuracy (%)")
    plots.save_figure(fig, workdir / sections.FIGURE)
    points = shortcut.figure_points(res, bench)
    if points:
      plots.save_figure(zoo_plots.uses_color_figure(points, titles=entries.titles_of(bench)),
                        workdir / shortcut.FIGURE)
      carries = shortcut.carries_points(res, bench)
      if carries:  # Not when every analysed run saw grey digits.
        plots.save_figure(zoo_plots.carries_color_figure(carries, titles=entries.titles_of(bench)),
                          workdir / shortcut.CARRIES_FIGURE)
  io.write_json(workdir / "results.json", res, indent=1)
  io.write_text(workdir / "benchmark.md", sections.render(res, bench, workdir))
  return res
