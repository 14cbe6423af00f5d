"""analysis.output: placeholder, written by hand in the next commit."""
