"""Claim verdicts: the claims of arXiv 2604.04281 per cell (verdicts, from the records of
claim_text and the statistical tests of claim_stats) and pooled over seeds (claims_seeds), and the
claims of arXiv 2605.13405 (claims_growth).

May import: analysis.ranking, analysis.axes, growth, growth.measure.
"""
