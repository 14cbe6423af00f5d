"""Several processes and devices of one job: hosts (jax.distributed: which process writes, agreeing
on decisions, host copies) and mesh (data parallelism over a device mesh, optionally FSDP).

May import: growth.
"""
