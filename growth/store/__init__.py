"""What the harness keeps on disk, safely: durable writes (files: atomic replacement, locked JSONL
appends, compressed arrays), orbax checkpoints of a train state (checkpoint) with their checksum manifest
(manifest) and quiet shutdown (quiet), cell leases and job-wide locks of many workers (lease), and JAX's
persistent compilation cache (compile_cache).

May import: growth, growth.distributed.
"""
