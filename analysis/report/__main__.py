"""`python -m analysis.report`: the paper-grid report (analysis/report/paper.py)."""

from analysis.report.paper import main

raise SystemExit(main())
