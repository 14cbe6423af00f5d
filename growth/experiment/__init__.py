"""growth.experiment: placeholder, written by hand in the next commit."""
