"""The study's results.json and report.md, from what the stages wrote into the study workdir.

collect.py reads the workdir once, findings.py tests the study's claims on what it read, and
sections.py writes report.md from both; write_report runs the three in that order.
"""

import pathlib
import shutil

from ccmnist import layout
from ccmnist import plots
from ccmnist.plots import eval as eval_plots
from ccmnist.report import collect as collect_lib
from ccmnist.report import findings as findings_lib
from ccmnist.report import markdown
from ccmnist.report import sections
from ccmnist.util import io

# The names callers and tests know this module by.
fmt, vs, point_at = markdown.fmt, markdown.vs, collect_lib.point_at
collect, findings = collect_lib.collect, findings_lib.findings


def write_report(study, workdir) -> dict:
  """Writes DIR/results.json and DIR/report.md (and the cross-run figures)."""
  workdir = pathlib.Path(workdir)
  res = collect_lib.collect(study, workdir)
  res["findings"] = findings_lib.findings(res)
  other = collect_lib.read_other(study)
  if other is not None:
    res["compared_with"] = {"path": study.compare_with,
                            "budget": findings_lib.budget(other["config"]),
                            "differences": findings_lib.profile_differences(res, other)}
  if res["runs"]:
    curves = collect_lib.collect_curves(study, workdir, res["runs"])
    plots.save_figure(eval_plots.training_curves_figure(curves),
                      workdir / "figures" / "training_curves.png")
  cheater_swap = layout.run_dir(workdir, "cheater") / "figures" / "color_swap.png"
  if cheater_swap.exists():
    shutil.copy(cheater_swap, workdir / "figures" / "color_swap_cheater.png")
  io.write_json(workdir / "results.json", res, indent=1)
  io.write_text(workdir / "report.md", sections.render(res, study, workdir))
  return res
