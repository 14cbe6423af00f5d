"""The study report, `python -m analysis.study` (report): the budget, speedup, growth-factor,
growth-step and optimizer axes, both papers' claims, and the paper-grid report in its paper/ folder.

May import: analysis.loading, analysis.output, analysis.axes, analysis.claims, analysis.report,
growth.store, growth.experiment.
"""
