"""The paper-grid report, `python -m analysis.report`: one learning-rate policy's analysis
(policy), report.md (render), and its files and command (paper).

May import: analysis.loading, analysis.ranking, analysis.output, analysis.claims, growth.store,
growth.widen.
"""
