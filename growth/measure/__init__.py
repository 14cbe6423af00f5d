"""growth.measure: placeholder, written by hand in the next commit."""
