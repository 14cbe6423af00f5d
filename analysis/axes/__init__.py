"""analysis.axes: placeholder, written by hand in the next commit."""
