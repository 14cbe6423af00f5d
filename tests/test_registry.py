"""The candidate registry: every entry is complete, its options live in the schema, and its
`preserving` flag is what growing a tiny trained state actually does (parametrised over the registry)."""

import dataclasses

import jax
import numpy as np
import pytest

from growth.config import Config, GrowthConfig
from growth.widen import grow, registry
from tests.test_widen import OPTIM, logits, small_state

ENTRIES = registry.entries()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_is_complete_and_its_options_are_in_the_schema(entry):
    assert entry.description and "\n" not in entry.description
    assert callable(entry.build)
    if entry.options is not None:
        field = {f.name: f for f in dataclasses.fields(GrowthConfig)}[entry.options_field]
        assert isinstance(getattr(GrowthConfig(), field.name), entry.options)


def test_registry_drives_the_default_pool_order_and_reference():
    pool = registry.default_pool()
    assert pool == [e.name for e in ENTRIES if e.in_default_pool]
    assert registry.reference() in pool and registry.get(registry.reference()).reference
    assert registry.ordered(["_pool", "zzz", *reversed(pool)]) == [*pool, "zzz"]
    assert len({e.order for e in ENTRIES}) == len(ENTRIES)  # a strict table order
    assert Config().pool is None  # unset = the registry's default pool (growth.experiment.pool.with_default_pool)


def test_register_refuses_a_bad_entry():
    entry = registry.get("exact_copy")
    with pytest.raises(registry.CandidateRegistryError, match="already registered"):
        registry.register(entry)
    with pytest.raises(registry.CandidateRegistryError, match="identifier"):
        registry.register(dataclasses.replace(entry, name="no spaces"))
    with pytest.raises(registry.CandidateRegistryError, match="already the reference"):
        registry.register(dataclasses.replace(entry, name="second_ref", reference=True))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_preserving_flag_matches_the_grown_function(entry):
    cfg, small = small_state("A")
    # an entry that trains before continuing (ligo) gets pre-growth batches, as growth.experiment.pool draws them
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 2, cfg.context + 1))
    batches = tokens if entry.pregrowth_batches else None
    grown = grow(entry.name, small, cfg, GrowthConfig(), OPTIM, jax.random.PRNGKey(5), batches)
    diff = float(np.abs(np.asarray(logits(grown.model_cfg, grown.state.params) - logits(cfg, small.params))).max())
    if entry.preserving:
        assert diff < 1e-4, (entry.name, diff)
    else:
        assert diff > 1e-3, (entry.name, diff)
    assert (grown.model_cfg.d_model != cfg.d_model) == entry.widens
