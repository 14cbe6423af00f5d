"""The benchmark suite runs end to end at tiny sizes and writes its results (timings are never asserted)."""

import json
import os

import pytest

from benchmarks import run


def _positive(tree) -> bool:
    """Every number in a spread of seconds, rates or ratios is positive."""
    if isinstance(tree, dict):
        return all(_positive(v) for k, v in tree.items() if k not in ("load_avg", "measured_at"))
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return tree > 0
    return True


def test_tiny_benchmark_writes_results(tmp_path):
    parts = "limit,step,pool,peer,cell,e2e"  # the replicas part has its own (slow) test
    run.main(
        ["--tiny", "--parts", parts, "--reps", "2", "--steps", "1", "--cell-steps", "3"]
        + ["--out", str(tmp_path), "--machine", "test"]
    )
    r = json.loads((tmp_path / "test.json").read_text())
    assert (tmp_path / "test.md").read_text().startswith("# Benchmark")
    assert {"machine", "settings", "limit", "step", "pool", "peer", "e2e", "targets"} <= set(r)
    assert r["limit"]["limit_gflops"] > 0
    for label in ("small", "wide"):
        s = r["step"][label]
        assert s["tokens_per_s"]["median"] > 0 and s["model_gflops"] > 0 and s["fraction_of_limit"] > 0
        assert _positive(s["step_ms"]) and _positive(s["fraction_of_interleaved_matmul"])
        assert s["page_faults_per_step"] >= 0 and s["cores_user"] > 0 and s["cores_kernel"] >= 0
    assert r["step"]["wide"]["d_model"] == 2 * r["step"]["small"]["d_model"]
    assert (
        _positive(r["pool"]["stacked_s"]) and _positive(r["pool"]["separate_s"]) and r["pool"]["speedup"]["median"] > 0
    )
    assert set(r["pool"]["by_pool_step"]) == {"map", "vmap"} and r["pool"]["pool_step"] == "map"
    if "skipped" not in r["peer"]:  # torch is an optional extra
        for label in ("small", "wide"):
            assert r["peer"][label]["same_param_count"]
            assert r["peer"][label]["ours_over_best_peer"] > 0
            assert r["peer"][label]["ours_over_hf"] > 0 and r["peer"][label]["ours_over_best_eager"] > 0
    c = r["cell"]
    # Ours trains the study pool as the runner does: msg in a group of its own, the small reference beside.
    assert c["ours"]["groups"] == [["exact_copy", "zero_pad", "shrink_perturb", "scratch_wide"], ["msg"]]
    assert c["ours"]["models"][-1] == "continue_small" and c["tokens_per_rep"] == 6 * c["steps"] * 16 * 16
    assert c["ours"]["wide_d_model"] == 2 * c["ours"]["small_d_model"] and c["ours"]["tokens_per_s"]["median"] > 0
    if c["skipped_peer"] is None:
        peers = [k for k in c if k.startswith("torch_eager_")]
        assert peers and all(c[k]["models"] == 6 for k in peers) and c["ours_over_best_peer"] > 0
        assert any(c[k].get("batched") for k in peers)  # the stacked peer is measured beside the sequential one
    assert "## 4b. A study_cpu_long cell" in (tmp_path / "test.md").read_text()
    e = r["e2e"]["smoke"]
    assert e["wall_s"] > 0 and 0 < e["compile_s"] <= e["wall_s"] and 0 < e["compile_share"] <= 1
    # The tiny grid is one cell with one regime: its wall time is part of the whole.
    assert [(c["seed"], c["regime"], c["replicate"]) for c in e["regime_cells"]] == [(0, "deterministic", 0)]
    assert 0 < e["grow_s"] < e["wall_s"] and e["pretrain_and_rest_s"] > 0
    assert {"wide_step_fraction_of_limit", "pool_speedup"} <= set(r["targets"])
    # The issue-12 targets are always present; what a run did not measure is null and not met.
    for k in run.REQUIRED_TARGETS:
        t = r["targets"][k]
        assert set(t) >= {"target", "threshold", "value", "met"} and (t["value"] is not None or not t["met"])
    assert any(r["machine"]["cpu_flags"].values()) or not r["machine"]["cpu_flags"]
    # The allocator is part of every figure (growth.huge_pages): recorded, and named in the markdown.
    assert r["machine"]["glibc_tunables"] == os.environ.get("GLIBC_TUNABLES", "")
    assert "Allocator: GLIBC_TUNABLES" in (tmp_path / "test.md").read_text()
    assert "page faults a step" in (tmp_path / "test.md").read_text()


@pytest.mark.slow  # the benchmark's own part; test_tiny_benchmark_writes_results covers the harness by default
def test_tiny_replicas_stacked_against_pinned_processes(tmp_path):
    run.main(
        ["--tiny", "--parts", "replicas", "--replicates", "2", "--reps", "2", "--steps", "1"]
        + ["--out", str(tmp_path), "--machine", "test"]
    )
    R = json.loads((tmp_path / "test.json").read_text())["replicas"]
    assert R["processes"] >= 1 and sum(R["replicates_per_process"]) == 2
    assert _positive(R["stacked_s"]) and _positive(R["processes_s"]) and R["processes_speedup"]["median"] > 0
