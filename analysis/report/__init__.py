"""analysis.report: placeholder, written by hand in the next commit."""
