"""The study's axes (SPEC section 5b): a group's eval-loss curves (curves), the hierarchical
bootstrap over seeds (hierarchical), the budget axis (budget), the speedup against scratch (speedup),
the growth factor (growth_factor), and the growth-step and optimizer axes (growth_step_axis,
optimizer_axis).

May import: analysis.loading, analysis.ranking, analysis.output, growth.measure, growth.widen.
"""
