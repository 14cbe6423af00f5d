"""What the reports are made of: ranking tables as CSV, Markdown and LaTeX (tables), the paper
report's figures (plots) and the study's (budget_plots), all PNG.

May import: analysis.loading, analysis.ranking, growth.measure, growth.store, growth.widen.
"""
