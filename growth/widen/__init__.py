"""Growth of a full training state: params, Adam moments, counters (docs/strategies.md).

grown = grow("exact_copy", small_state, small_cfg, cfg.growth, cfg.optim, key)
grown.state, grown.model_cfg, grown.embed_map

Every candidate is one entry of the candidate registry (`registry`, growth/widen/registry.py).

May import: growth, growth.models, growth.training.
"""

from growth.widen import (
    cited,  # noqa: F401  (registers the SPEC 3b candidates)
    registry,
)
from growth.widen.candidates import check_options, grow
from growth.widen.core import Grown, GrowthError, UnknownCandidate, wide_config
from growth.widen.registry import Candidate, register

__all__ = [
    "Candidate",
    "Grown",
    "GrowthError",
    "UnknownCandidate",
    "check_options",
    "grow",
    "register",
    "registry",
    "wide_config",
]
