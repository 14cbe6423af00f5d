"""The entry points: `python -m experiments.NAME`. Started that way, the process first re-executes itself
with huge pages for the allocator (growth.huge_pages), before any of them imports JAX."""

from growth import huge_pages

huge_pages.reexec_if_run_as_module()
