"""The benchmarks: `python -m benchmarks.NAME`. Started that way, the process first re-executes itself with
huge pages for the allocator (growth.huge_pages), as the experiments' entry points do, so ours is timed as
users run it; the torch peers share the process and so the allocator."""

from growth import huge_pages

huge_pages.reexec_if_run_as_module()
