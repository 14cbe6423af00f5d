"""analysis.study: placeholder, written by hand in the next commit."""
