"""benchmarks/explore: its command line answers --help, and its rewritten model is the library's function."""

import json
import subprocess
import sys

import numpy as np
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
    for what in ("profile", "variants", "pool", "batch", "flags", "cell", "eval", "products"):
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


def test_products_time_the_same_product_in_xla_and_torch():
    torch = pytest.importorskip("torch")
    from benchmarks.explore import products

    table = products.attention_products(2, 3, 5, 4) | products.dense_products(6, 4, 8, 10)
    rng = np.random.default_rng(0)
    for name, p in table.items():
        a, b = rng.standard_normal(p.lhs, dtype=np.float32), rng.standard_normal(p.rhs, dtype=np.float32)
        got = np.asarray(p.xla(a, b))
        want = p.torch(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
        batch = int(np.prod(got.shape[:-2]))  # the leading dims of a batched product's output; 1 for a matmul
        assert a.size * b.size == got.size * batch * p.contracted**2, name  # the FLOP count's contraction length


def test_the_products_subcommand_reports_every_product(capsys):
    from benchmarks.explore import cli, products

    tiny = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "data.vocab_size=64", "data.context=8"]
    cli.main(["products", "--batch", "2", "--steps", "1", "--reps", "1", *(f"--override={o}" for o in tiny)])
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == {"batch": 2, "context": 8, "heads": 2, "d_model": 16}
    names = set(products.attention_products(1, 1, 1, 1)) | set(products.dense_products(1, 1, 1, 1))
    assert set(out["products"]) == names
    assert all(row["xla_gflops"] > 0 for row in out["products"].values())
