"""The paper report's statistics, cell by cell: bootstrap primitives (bootstrap), a cell as arrays
(cell_data), paired CIs and tau draws (stats), tie-aware rankings (rankings) and selector agreement
(selectors).

May import: analysis.loading, growth.measure, growth.widen.
"""
