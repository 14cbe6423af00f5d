"""The harness's library: width-growth warm starts of small causal language models (JAX / Flax NNX).

At the top level, the typed configuration: config (the schema, every default), errors, validate
(`to_config` and the range checks) and presets (the tiny preset, composed from code); and huge_pages
(the allocator setting the entry points re-execute with, standard library only). The packages, from
the bottom up (docs/architecture.md): distributed, store, data, models, training, widen, measure,
experiment; interop sits downstream of them all. tests/test_imports.py checks every direction.

May import: nothing (the top-level modules import one another only).
"""
