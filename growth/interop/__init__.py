"""Working with checkpoints from elsewhere, apart from the growth pipeline: surgery on parameter trees
(partial init, zeroing, depth insertion) and importing Hugging Face GPT-2 / GPT-Neo checkpoints."""
