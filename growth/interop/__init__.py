"""Working with checkpoints from elsewhere, apart from the growth pipeline: surgery on parameter trees
(partial init, zeroing, depth insertion) and importing Hugging Face GPT-2, GPT-Neo, Llama and Qwen2 checkpoints
(one record per architecture, registered in hf_families.py).

Downstream of the pipeline: nothing in growth/ or analysis/ imports it (experiments/ does).

May import: growth, growth.store, growth.data, growth.models, growth.training, growth.widen,
growth.experiment.
"""
