"""Analysis of grow-run results: rankings, selector agreement, claim verdicts, figures.

Entry points: `python -m analysis.report RESULTS_DIR` (the paper-grid report) and `python -m analysis.study
RESULTS_DIR` (the study report); see docs/analysis.md. The packages, from the bottom up: loading, ranking,
output, axes, claims, report, study.

May import: nothing (a docstring only).
"""
