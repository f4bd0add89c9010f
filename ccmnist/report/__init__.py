"""The study report: results.json -> report.md."""
