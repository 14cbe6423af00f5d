"""`python -m analysis.study`: the study report (analysis/study/report.py)."""

from analysis.study.report import main

raise SystemExit(main())
