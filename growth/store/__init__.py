"""growth.store: placeholder, written by hand in the next commit."""
