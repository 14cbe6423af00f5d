"""analysis.ranking: placeholder, written by hand in the next commit."""
