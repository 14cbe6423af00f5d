"""analysis.loading: placeholder, written by hand in the next commit."""
