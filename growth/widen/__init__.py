"""Width growth of a full training state: params, Adam moments, counters (docs/strategies.md).

grown = grow("exact_copy", small_state, small_cfg, cfg.growth, cfg.optim, key)
grown.state, grown.model_cfg, grown.embed_map
"""

from growth.widen.candidates import CANDIDATES, NEEDS_BATCHES, grow
from growth.widen.core import Grown, GrowthError, UnknownCandidate, wide_config

__all__ = ["CANDIDATES", "NEEDS_BATCHES", "Grown", "GrowthError", "UnknownCandidate", "grow", "wide_config"]
