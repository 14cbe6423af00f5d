"""Working with checkpoints from elsewhere, apart from the growth pipeline: surgery on parameter trees
(partial init, zeroing, depth insertion) and importing Hugging Face GPT-2, GPT-Neo, Llama and Qwen2 checkpoints
(one record per architecture, registered in hf_families.py)."""
