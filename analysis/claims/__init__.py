"""analysis.claims: placeholder, written by hand in the next commit."""
