"""Transparent huge pages for glibc's malloc, set by re-executing an entry point once at its start.

A compiled train step takes its temporaries as one block per call (158 MiB for the wide paper_cpu
step). glibc serves a block that large with a fresh mmap and hands it back with munmap when the call
ends, so every step touches about 40,000 new 4 KiB pages, one kernel page fault each: 0.4 of the
1.7 cores the wide step keeps busy went to the kernel on the 2-core Xeon (docs/performance.md, issue
29). glibc's tunable `glibc.malloc.hugetlb=1` (glibc 2.35 and later) has malloc ask the kernel for
transparent huge pages on its mappings (madvise), 512 times fewer faults. The kernel only honours the
request where transparent huge pages are in `madvise` mode; in `always` mode every mapping gets them
already and in `never` mode none can. Tunables are read when a process starts, so the entry points
(`python -m experiments.NAME`, `python -m benchmarks.NAME`) re-execute themselves once with it set,
before JAX is imported. It changes where memory comes from, never a result.

Standard library only: it runs before anything else is imported. `GROWTH_HUGE_PAGES=0` turns it off
(for a debugger attached to the first process, or to measure without it).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "GROWTH_HUGE_PAGES"  # "0": leave the allocator as the environment has it
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
MIN_GLIBC = (2, 35)  # the first glibc with the hugetlb tunable


def thp_mode(path: Path = THP_MODE) -> str:
    """The kernel's transparent-huge-page mode (`always`, `madvise`, `never`), or "" where it has none."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    chosen = [w[1:-1] for w in text.split() if w.startswith("[") and w.endswith("]")]
    return chosen[0] if chosen else ""


def glibc_version() -> tuple[int, ...] | None:
    """The C library's version when it is glibc, else None (musl, macOS, Windows)."""
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return None
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def environment_with_tunable(environ: Mapping[str, str], glibc: tuple[int, ...] | None, mode: str) -> dict | None:
    """The environment to re-execute with, or None where the tunable cannot help or is already decided.

    None when: the user opted out; GLIBC_TUNABLES already names hugetlb (set by the user, or by the
    first process of this one); the C library is not glibc 2.35 or later; the kernel's mode is not
    `madvise`. Other tunables the user set are kept.
    """
    if environ.get(OPT_OUT, "1") == "0" or "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return None
    if glibc is None or glibc < MIN_GLIBC or mode != "madvise":
        return None
    tunables = ":".join(t for t in (environ.get("GLIBC_TUNABLES", ""), TUNABLE) if t)
    return {**environ, "GLIBC_TUNABLES": tunables}


def reexec_if_run_as_module() -> None:
    """Re-execute this process with the tunable when it is starting a package's module (`python -m`).

    Called from a package's `__init__`: while `python -m pkg.mod` locates its module, the package is
    imported with sys.argv[0] == "-m" (nothing of the module has run yet); an import of the package
    from anywhere else (tests, a notebook) leaves the process alone.
    """
    if sys.argv[:1] != ["-m"] or not getattr(sys, "orig_argv", None):
        return
    env = environment_with_tunable(os.environ, glibc_version(), thp_mode())
    if env is None or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as e:  # the run goes on with the allocator as it is, which is only slower
        print(f"growth.huge_pages: could not re-execute with {TUNABLE} ({e}); continuing without", file=sys.stderr)
