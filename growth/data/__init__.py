"""growth.data: placeholder, written by hand in the next commit."""
