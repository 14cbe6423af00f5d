"""Shared pieces of the benchmark suite: presets, config composition, repeated timing, compile clock."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Preset:
    """What a benchmark run measures; `--tiny` swaps in a preset small enough for a test."""

    name: str
    overrides: list[str]  # Hydra overrides giving the model, optimizer and batch of parts 2-4
    matmul_sizes: list[int]  # square sizes of the matmul limit
    matmul_dtype: str  # dtype of the limit's operands: float32, or bfloat16 where the preset uses it
    matmul_precision: str  # jax_default_matmul_precision during parts 1-3 ("default", "bfloat16", ...)
    reps: int = 7  # timed repetitions of each figure (after a warm-up)
    steps_per_rep: int = 10  # training steps in one timed repetition
    pool_k: int = 5  # stacked candidates: the wide candidates of the paper pool
    e2e_overrides: list[str] = field(default_factory=list)  # added to every e2e experiment
    e2e_under: str | None = None  # an experiment preset composed on top of each e2e experiment (tiny shrinks it)
    peer_compiled: bool = True  # time the best-practice peer under torch.compile too (a minute of compiling)


PRESETS = {
    "cpu": Preset(
        name="cpu",
        overrides=["experiment=paper_cpu"],
        matmul_sizes=[256, 512, 1024, 2048],
        matmul_dtype="float32",
        matmul_precision="default",
    ),
    # No accelerator was lent to the session that wrote this; the preset is built, not yet measured.
    "gpu": Preset(
        name="gpu",
        overrides=["experiment=paper_cpu", "model=gpu"],
        matmul_sizes=[1024, 2048, 4096, 8192],
        matmul_dtype="bfloat16",
        matmul_precision="bfloat16",
        reps=9,
        steps_per_rep=50,
    ),
}

# A preset for tests: the whole suite in a few seconds per part. Parts 2-4 time the tiny experiment preset
# (configs/experiment/tiny.yaml); the e2e part composes it on top of each timed experiment.
TINY = Preset(
    name="tiny",
    overrides=["experiment=tiny"],
    matmul_sizes=[64, 128],
    matmul_dtype="float32",
    matmul_precision="default",
    reps=3,
    steps_per_rep=2,
    pool_k=2,
    peer_compiled=False,
    e2e_under="tiny",
    e2e_overrides=[
        "grid=[{seed:0,growth_step:10}]",
        "pool=[exact_copy,scratch_wide,continue_small]",  # two wide: the pool part's compiled step
        "regimes=[deterministic]",
        "replicates=1",  # smoke has 2; one cell keeps the test short
    ],
)


def preset(name: str, tiny: bool) -> Preset:
    if tiny:
        return TINY
    if name not in PRESETS:
        raise SystemExit(f"--preset {name!r} is unknown; use one of {sorted(PRESETS)}")
    return PRESETS[name]


def compose(overrides: list[str]):
    """The typed growth Config that `python -m experiments.reproduce <overrides>` would run."""
    from growth import presets

    return presets.compose(overrides)


# ---------------------------------------------------------------- statistics and timing


def spread(values: list[float]) -> dict:
    """Median with min/max and the interquartile range of repeated measurements."""
    v = sorted(float(x) for x in values)
    q1, q3 = np.percentile(v, [25, 75]) if len(v) > 1 else (v[0], v[0])
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": float(q1), "q3": float(q3), "n": len(v)}


def scaled(stats: dict, factor: float) -> dict:
    """A spread of seconds turned into a rate: factor / seconds (min and max swap)."""
    out = {k: factor / stats[k] for k in ("median", "min", "max", "q1", "q3")}
    out["min"], out["max"] = out["max"], out["min"]
    out["q1"], out["q3"] = out["q3"], out["q1"]
    return out | {"n": stats["n"]}


def warm_step_runner(step: Callable, state, batch, n_steps: int) -> Callable[[], None]:
    """A zero-argument runner of `n_steps` donated steps that carries its own state; compiled and warmed."""
    holder = {"state": state}

    def run() -> None:
        s = holder["state"]
        for _ in range(n_steps):
            s, m = step(s, batch)
        m["loss"].block_until_ready()
        holder["state"] = s

    run()  # compile and warm up
    return run


def repeat(fn: Callable[[], None], reps: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `reps` calls of `fn` (which must block on its result) after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------- compile clock


class CompileClock:
    """Wall time JAX spends tracing, lowering and compiling (or loading from the persistent cache).

    JAX reports each of `/jax/core/compile/{jaxpr_trace,jaxpr_to_mlir_module,backend_compile}_duration`
    as a time span; nested jits report spans inside their caller's, so the clock takes the union of the
    spans, never their sum.
    """

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self):
        self.spans: list[tuple[float, float]] | None = None
        self.cache_hits = 0

    def _on_span(self, event: str, start: float, end: float, **kw) -> None:
        if self.spans is not None and event in self.EVENTS:
            self.spans.append((start, end))

    def _on_event(self, event: str, **kw) -> None:
        if self.spans is not None and event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    @contextlib.contextmanager
    def measure(self):
        """Collect spans inside the block; read `seconds()` after it."""
        from jax import monitoring

        self.spans, self.cache_hits = [], 0
        monitoring.register_event_time_span_listener(self._on_span)
        monitoring.register_event_listener(self._on_event)
        try:
            yield self
        finally:
            monitoring.unregister_event_time_span_listener(self._on_span)
            monitoring.unregister_event_listener(self._on_event)

    def seconds(self) -> float:
        total, end = 0.0, -np.inf
        for s, e in sorted(self.spans or []):
            if e > end:
                total += e - max(s, end)
                end = e
        return total


# ---------------------------------------------------------------- machine


def machine_name() -> str:
    return socket.gethostname().split(".")[0] or "machine"


def cpu_kind() -> str:
    """The CPU vendor in a word (amd, intel, or the machine's architecture): results files are one per kind."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    vendor = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("vendor_id")), "")
    return {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(vendor, platform.machine().lower() or "cpu")


def machine_info() -> dict:
    import jax

    from growth import huge_pages

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # The allocator's huge pages (growth.huge_pages): ours and the torch peers share the process and them.
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "transparent_hugepages": huge_pages.thp_mode(),
        "load_avg_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_flags() -> dict:
    """The vector extensions that decide which kernels XLA and torch pick: only ratios within one run compare."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return {f: f in flags for f in VECTOR_FLAGS}
