"""The study's report (collect -> findings -> sections: results.json, report.md), and the
markdown pieces it shares with the zoo's."""
