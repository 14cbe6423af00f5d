"""The one state mapping behind every width-growth candidate (docs/strategies.md).

Every widened axis lives in a named *space* (the residual stream, the q/k space of layer i, ...) and
every space has an embedding matrix M (d_small, k * d_small) with M M^T = k I: the tiled identity
[I ... I] for the clone (wide unit i copies small unit g(i) = i mod d), [I ... I] P for
structured_non_clone. `map_axes` contracts a tensor with the matrix of each of its axes; it is the
only index map, used for the parameters (scale 1 / c_in), Adam's mu (1 / c_out) and, through
`map_moments`, Adam's nu (1 / c_out^2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from growth.config import (
    GrowthConfig,
    LrCorrection,
    ModelConfig,
    Schedule,
    check_choice,
)
from growth.models import family as family_lib
from growth.models import gpt as model_lib
from growth.models.gpt import ConfigError
from growth.training import optimizer, train
from growth.widen.trees import flatten, numpy_rng, path_str, to_numpy, unflatten_like

__all__ = ["flatten", "numpy_rng", "path_str", "to_numpy", "unflatten_like"]  # the tree helpers, by their old home

RESID = family_lib.RESID
# The growth factor of every space: one int (every space widens by k) or per space (a multi-query
# model's kv spaces stay at 1: growth.models.family).
Factors = int | Mapping[str, int]


class GrowthError(ConfigError):
    """A growth spec or small state that cannot be widened; the message names the value and the fix."""


class UnknownCandidate(GrowthError):
    """A candidate name that is not registered."""


@dataclass(frozen=True)
class Grown:
    state: train.TrainState  # full wide train state (params, opt_state, step, dropout_key)
    model_cfg: ModelConfig  # the wide config (continue_small: the small one)
    embed_map: jax.Array | None  # (d_small, d_wide): wide_residual = small_residual @ E; None for scratch
    growth_tokens: int = 0  # tokens the candidate trained on before its continuation (ligo's operator)
    growth_losses: tuple[float, ...] = ()  # its training loss at each of those steps (ligo)


# ---------------------------------------------------------------- spec and config checks


def check_k(k: Any) -> int:
    """The width factor as an int >= 2, or GrowthError."""
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise GrowthError(f"growth.k={k!r} must be an integer >= 2 (e.g. growth.k=2)")
    if float(k) != int(k) or int(k) < 2:
        raise GrowthError(f"growth.k={k!r} must be an integer >= 2 (e.g. growth.k=2 or growth.k=3)")
    return int(k)


def check_spec(spec: GrowthConfig) -> int:
    """Validate the options every candidate reads; return k. A candidate's own options are checked by
    its registry entry (`check`, growth/widen/candidates.py)."""
    k = check_k(spec.k)
    try:
        check_choice("growth.schedule", spec.schedule, Schedule)
        check_choice("growth.lr_correction", spec.lr_correction, LrCorrection)
    except ValueError as e:
        raise GrowthError(str(e)) from None
    if spec.schedule == Schedule["rewarm"] and int(spec.rewarm_steps) < 1:
        raise GrowthError(f"growth.rewarm_steps={spec.rewarm_steps} must be >= 1 with growth.schedule=rewarm")
    return k


def wide_config(small_cfg: ModelConfig, spec: GrowthConfig) -> ModelConfig:
    """d_model, n_heads (llama: MLP hidden, kv heads but one) times k; tied: logit_scale / k."""
    k = check_k(spec.k)
    model_lib.validate_model_config(small_cfg)
    logit_scale = small_cfg.logit_scale / k if small_cfg.tie_embeddings else small_cfg.logit_scale
    return dataclasses.replace(family_lib.record(small_cfg).wide_config(small_cfg, k), logit_scale=logit_scale)


def factors(cfg: ModelConfig, k: int) -> dict[str, int]:
    """The growth factor of every space of `cfg` at width factor k."""
    return family_lib.record(cfg).factors(cfg, k)


def check_state(small: train.TrainState, small_cfg: ModelConfig) -> None:
    """The small state must hold exactly the parameters (and Adam moments) `small_cfg` builds."""
    model_lib.validate_model_config(small_cfg)
    _, expected = model_lib.abstract(small_cfg)
    exp, got = flatten(expected), flatten(small.params)
    hint = (
        f" (model config: d_model={small_cfg.d_model}, n_heads={small_cfg.n_heads}, n_layers="
        f"{small_cfg.n_layers}, vocab_size={small_cfg.vocab_size}, context={small_cfg.context},"
        f" norm={small_cfg.norm}, tie_embeddings={small_cfg.tie_embeddings}); pass the ModelConfig the"
        " small state was trained with"
    )
    missing, extra = sorted(set(exp) - set(got)), sorted(set(got) - set(exp))
    if missing or extra:
        raise GrowthError(
            f"the small state's parameters do not fit the model config: missing {missing}, unexpected {extra}{hint}"
        )
    for path, s in exp.items():
        if tuple(got[path].shape) != tuple(s.shape):
            raise GrowthError(
                f"the small state's parameter {path} has shape {tuple(got[path].shape)} but the model config"
                f" expects {tuple(s.shape)}{hint}"
            )
    opt = small.opt_state
    names = (optimizer.CLIP, optimizer.ADAM, optimizer.DIRECTION, optimizer.DECAY, optimizer.SCHEDULE)
    if not isinstance(opt, Mapping) or tuple(opt) != names or not hasattr(opt[optimizer.ADAM], "mu"):
        raise GrowthError(
            f"the small state's opt_state is not the growth.training.optimizer.make_optimizer chain (named {list(names)});"
            " build the small run with growth.training.optimizer.make_optimizer"
        )
    for name in ("mu", "nu"):
        moments = flatten(getattr(opt[optimizer.ADAM], name))
        for path, s in exp.items():
            if path not in moments or tuple(moments[path].shape) != tuple(s.shape):
                raise GrowthError(
                    f"the small state's Adam {name} for {path} does not match its parameter shape"
                    f" {tuple(s.shape)}; the optimizer state belongs to another model{hint}"
                )


# ---------------------------------------------------------------- layout


class Layout(NamedTuple):
    spaces: tuple[str | None, ...]  # the space of each axis; None = not widened
    input_axes: tuple[int, ...]  # axes the parameter contracts (reads); the rest it writes


def layout(path: str) -> Layout:
    """Which space each axis of a parameter lives in, from its path (growth/models/gpt.py docstring)."""
    parts = path.split("/")
    leaf = parts[-1]
    if parts[0] in ("tok_embed", "pos_embed"):
        return Layout((None, RESID), ())  # a writer; a tied tok_embed's reader side is logit_scale / k
    if parts[0] == "lm_head":
        return Layout((RESID, None), (0,))
    if parts[0] == "ln_f" or (len(parts) == 4 and parts[2] in ("ln1", "ln2")):
        return Layout((RESID,), ())  # elementwise: gains and biases write the normalised stream
    if parts[0] == "blocks" and len(parts) == 5:
        i, module = parts[1], parts[3]
        space_in, space_out = {
            "q": (RESID, f"q{i}"),
            "k": (RESID, f"k{i}"),
            "v": (RESID, f"v{i}"),
            "o": (f"o{i}", RESID),
            "fc": (RESID, f"mlp{i}"),
            "gate": (RESID, f"mlp{i}"),
            "up": (RESID, f"mlp{i}"),
            "proj": (f"mlp{i}", RESID),
        }.get(module, (None, None))
        if space_in is not None and leaf == "kernel":
            return Layout((space_in, space_out), (0,))
        if space_in is not None and leaf == "bias":
            return Layout((space_out,), ())
    raise GrowthError(f"no widening layout for parameter {path}; growth/widen/core.py:layout must name it")


def factor(space: str | None, k: Factors) -> int:
    """The growth factor of one space (1 for an axis that is not widened)."""
    if space is None:
        return 1
    return k if isinstance(k, int) else k[space]


def c_in(path: str, k: Factors) -> int:
    lay = layout(path)
    return math.prod(factor(lay.spaces[a], k) for a in lay.input_axes)


def c_out(path: str, k: Factors) -> int:
    lay = layout(path)
    return math.prod(factor(s, k) for a, s in enumerate(lay.spaces) if a not in lay.input_axes)


def unit_copy(path: str, shape: tuple[int, ...], k: Factors) -> np.ndarray:
    """Copy index (0 .. c-1) of the unit each entry belongs to: the output axis when widened, else input."""
    lay = layout(path)
    widened = [a for a, s in enumerate(lay.spaces) if factor(s, k) > 1]
    if not widened:  # e.g. a multi-query model's kv bias: one copy of everything
        return np.zeros(shape, np.int64)
    outs = [a for a in widened if a not in lay.input_axes]
    axis = (outs or widened)[0]
    d = shape[axis] // factor(lay.spaces[axis], k)
    idx = np.arange(shape[axis]) // d
    return np.broadcast_to(np.expand_dims(idx, [a for a in range(len(shape)) if a != axis]), shape)


def clone_matrix(d: int, k: int) -> np.ndarray:
    """[I ... I] (d, k d): wide unit i copies small unit i mod d."""
    return np.tile(np.eye(d), (1, k))


@dataclass(frozen=True)
class Tile:
    """The clone matrix [I ... I] (d, k d), applied by tiling: the same map, without a dense product."""

    d: int
    k: int

    @property
    def matrix(self) -> np.ndarray:
        return clone_matrix(self.d, self.k)


AxisMap = np.ndarray | Tile


def space_dims(cfg: ModelConfig) -> dict[str, int]:
    """Small dimension of every space of a model."""
    return family_lib.record(cfg).space_dims(cfg)


def clone_maps(cfg: ModelConfig, k: int) -> dict[str, AxisMap]:
    fac = factors(cfg, k)
    return {name: Tile(d, fac[name]) for name, d in space_dims(cfg).items()}


def dense(m: AxisMap) -> np.ndarray:
    return m.matrix if isinstance(m, Tile) else m


# ---------------------------------------------------------------- the one map


def map_axes(x: np.ndarray, mats: Sequence[AxisMap | None]) -> np.ndarray:
    """x'[.., i, ..] = sum_a M[a, i] x[.., a, ..] on every axis that has a matrix."""
    for axis, m in enumerate(mats):
        if isinstance(m, Tile):  # x'[.., i, ..] = x[.., i mod d, ..]
            x = np.concatenate([x] * m.k, axis=axis)
        elif m is not None:
            x = np.moveaxis(np.tensordot(x, m, axes=([axis], [0])), -1, axis)
    return x


def axis_mats(path: str, maps: dict[str, AxisMap]) -> list[AxisMap | None]:
    return [None if s is None else maps[s] for s in layout(path).spaces]


def map_param(path: str, w: np.ndarray, maps: dict[str, AxisMap], k: Factors) -> np.ndarray:
    """W' = W contracted with each axis's embedding matrix, divided by c_in."""
    return map_axes(w, axis_mats(path, maps)) / c_in(path, k)


@dataclass
class Term:
    """One source of a wide tensor's gradient: G' += (source contracted with pre[a] @ M[a] per axis)."""

    mu: np.ndarray
    nu: np.ndarray
    pre: tuple[np.ndarray | None, ...] | None = None  # per-axis map applied before the space's M


def map_moments(
    path: str, terms: Sequence[Term], maps: dict[str, AxisMap], k: Factors
) -> tuple[np.ndarray, np.ndarray]:
    """(mu', nu') of a wide tensor from the small moments of its gradient sources.

    The gradient maps linearly, G' = L G / c_out, so mu' = L mu / c_out exactly. For nu, the gradient's
    mean part is mapped exactly and its fluctuation is taken as independent per small coordinate:
    nu' = ((L m)^2 + (L o L)(nu - m^2)) / c_out^2 with m = clip(mu, +-sqrt(nu)) (Cauchy-Schwarz), so
    nu' >= 0, nu' = (L o L) nu for a clone (L = 0/1 index map), and nu' = (L G)^2 exactly when
    nu = mu^2 (one step with b1 = b2 = 0).
    """
    mats = axis_mats(path, maps)
    c = c_out(path, k)
    mean: Any = 0.0
    var: Any = 0.0
    mu: Any = 0.0
    for t in terms:
        pre = t.pre or (None,) * t.mu.ndim
        lin = [_compose(p, m) for p, m in zip(pre, mats, strict=True)]
        sq = [a if a is None or isinstance(a, Tile) else a * a for a in lin]  # a 0/1 tile is its own square
        m = np.clip(t.mu, -np.sqrt(t.nu), np.sqrt(t.nu))
        mu = mu + map_axes(t.mu, lin)
        mean = mean + map_axes(m, lin)
        var = var + map_axes(t.nu - m * m, sq)
    return mu / c, (mean * mean + var) / c**2


def _compose(pre: np.ndarray | None, m: AxisMap | None) -> AxisMap | None:
    if pre is None:
        return m
    return pre if m is None else pre @ dense(m)
