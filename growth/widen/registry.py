"""The candidate registry: one entry per warm start, read by everything that needs a candidate.

An entry holds what every consumer needs: the builder (`grow` dispatches to it), the options dataclass
it reads (a field of growth.config.GrowthConfig, validated by Hydra), whether it preserves the small
model's function at lag 0 (the tests and the report read it), its place and colour in tables and
plots, and a one-line description (the report's and the docs' candidate table). The default pool,
the reference baseline, the analysis order and colours all come from here. docs/extending.md shows a
worked example; `register` is the only way in:

    registry.register(registry.Candidate(
        name="my_warm_start", build=my_builder, order=70, color="C7",
        preserving=False, description="what it does, in one line",
    ))

This module imports nothing from the harness, so every layer (config-free analysis code included)
may read it; the built-in entries are registered by growth/widen/candidates.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# (small TrainState, small ModelConfig, GrowthConfig, OptimConfig, key[, batches=]) -> growth.widen.core.Grown
Builder = Callable[..., Any]


class CandidateRegistryError(ValueError):
    """A registry entry that cannot be registered; the message names it and the fix."""


@dataclass(frozen=True)
class Candidate:
    """One warm start: everything the pool, the analysis, the tests and the docs read about it."""

    name: str  # the name in configs (pool=[...]), results.jsonl and the report
    build: Builder  # (small, small_cfg, spec, optim_cfg, key) -> Grown
    order: int  # place in tables and plots (ascending); built-ins use multiples of 10
    color: str  # matplotlib colour of its curves and markers, the same in every figure
    preserving: bool  # preserves the small model's function at lag 0 with its default options
    description: str  # one line: the report's and docs/strategies.md's candidate table
    # Its options dataclass and the GrowthConfig field that holds it (growth.<field>), if it has one.
    options: type | None = None
    options_field: str | None = None
    check: Callable[[Any], None] | None = None  # validates its options in a GrowthConfig; raises GrowthError
    in_default_pool: bool = True  # part of the pool when a config names none
    reference: bool = False  # the small model continued: the baseline every candidate is compared with
    widens: bool = True  # False: the model keeps its width (the reference, depth growth)
    # It trains before its continuation on pretraining batches drawn before the growth step (ligo): the
    # pool draws them (growth.experiment.pool.growth_batches) and `grow` passes them to `build` as `batches=`.
    pregrowth_batches: bool = False


_ENTRIES: dict[str, Candidate] = {}


def register(entry: Candidate, replace: bool = False) -> Candidate:
    """Add a candidate; `replace` overwrites an entry of the same name (tests, notebooks)."""
    if not entry.name.isidentifier():
        raise CandidateRegistryError(f"candidate name {entry.name!r} must be a Python identifier (e.g. my_warm_start)")
    if entry.name in _ENTRIES and not replace:
        raise CandidateRegistryError(f"candidate {entry.name!r} is already registered; pick another name")
    if (entry.options is None) != (entry.options_field is None):
        raise CandidateRegistryError(f"candidate {entry.name!r}: give both options and options_field, or neither")
    others = [c for c in _ENTRIES.values() if c.reference and c.name != entry.name]
    if entry.reference and others:
        raise CandidateRegistryError(f"candidate {entry.name!r}: {others[0].name!r} is already the reference")
    _ENTRIES[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an entry (a test that registered one cleans up after itself)."""
    _ENTRIES.pop(name, None)


def get(name: str) -> Candidate | None:
    """The entry of `name`, or None."""
    return _ENTRIES.get(name)


def names() -> list[str]:
    """Every registered candidate, in table order."""
    return [c.name for c in entries()]


def entries() -> list[Candidate]:
    """Every entry, in table order (order, then name)."""
    return sorted(_ENTRIES.values(), key=lambda c: (c.order, c.name))


def default_pool() -> list[str]:
    """The pool a config gets when it names none."""
    return [c.name for c in entries() if c.in_default_pool]


def needing_batches(names_: Iterable[str]) -> list[str]:
    """The names among `names_` whose entry trains on pre-growth batches."""
    return [n for n in names_ if (e := _ENTRIES.get(n)) is not None and e.pregrowth_batches]


def reference() -> str:
    """Name of the reference baseline (the small model continued)."""
    found = [c.name for c in _ENTRIES.values() if c.reference]
    if len(found) != 1:
        raise CandidateRegistryError(f"exactly one candidate must be the reference, found {found}")
    return found[0]


def ordered(names_: Iterable[str]) -> list[str]:
    """Registered names in table order, then any others alphabetically; `_pool`-style names dropped."""
    wanted = {n for n in names_ if not n.startswith("_")}
    known = [n for n in names() if n in wanted]
    return known + sorted(wanted - set(known))


def color(name: str) -> str:
    """The candidate's colour; an unregistered name (an old results file) gets a stable one."""
    entry = _ENTRIES.get(name)
    return entry.color if entry else f"C{sum(map(ord, name)) % 10}"
