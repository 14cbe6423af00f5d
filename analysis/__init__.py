"""Analysis of grow-run results: rankings, selector agreement, claim verdicts, figures.

Entry point: `python -m analysis.report RESULTS_DIR` (see docs/analysis.md).
"""
