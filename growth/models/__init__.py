"""growth.models: placeholder, written by hand in the next commit."""
