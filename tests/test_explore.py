"""benchmarks/explore: its command line answers --help, and its rewritten model is the library's function."""

import subprocess
import sys

import pytest

from benchmarks.explore import losses
from benchmarks.explore.steps import check_variant
from benchmarks.jax_parts import fresh, random_batch
from growth import presets
from tests.conftest import REPO


def test_help_lists_every_subcommand():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.explore", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for what in ("profile", "variants", "pool", "batch", "flags", "cell", "eval"):
        assert what in proc.stdout


@pytest.mark.parametrize(
    "name",
    [
        "explicit_forward",
        "fused_qkv+heads_first",
        "attention_deferred",
        "ce_barrier",
        "attention_scaled_scores",
        "halves_unrolled",
    ],
)
def test_a_variant_has_the_baseline_loss_and_gradients(tmp_path, name):
    cfg = presets.tiny(tmp_path)
    graphdef, _, state = fresh(cfg, cfg.model)
    check = check_variant(graphdef, state.params, random_batch(cfg.model, 4), losses.VARIANTS[name])
    assert check["loss_diff"] < 1e-5 and check["max_grad_diff"] < 1e-5, check
    broken = losses.make_loss(head=lambda m, h, t: 2.0 * losses.head_current(m, h, t))  # a wrong loss is caught
    assert check_variant(graphdef, state.params, random_batch(cfg.model, 4), broken)["loss_diff"] > 1e-3
