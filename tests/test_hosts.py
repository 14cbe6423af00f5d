"""Two jax.distributed processes on localhost (2 fake CPU devices each, gloo collectives): they agree,
only process 0 writes, and the result equals a single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from growth.config import MeshConfig
from growth.distributed import hosts
from growth.experiment import pretrain, runner
from growth.training import train
from tests import hosts_worker
from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_processes(tmp: Path, mode: str, timeout: int) -> list[dict]:
    """Start both processes of one job (the coordinator is process 0's, on a free port); their results."""
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env |= {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", hosts.COUNT: "2"}
    env[hosts.ADDRESS] = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.hosts_worker", str(tmp), mode],
            cwd=REPO,
            env=env | {hosts.INDEX: str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outs


# 17-21 s on the 2-core machine under a load of ~9 (mostly two interpreter and jax starts).
def test_two_processes_agree_and_only_process_0_writes(tmp_path):
    first, second = _two_processes(tmp_path, "light", timeout=300)
    assert [first["process"], second["process"]] == [0, 1] and first["processes"] == 2
    assert first["devices"] == second["devices"] == [4, 2]  # the mesh spans both processes' devices
    assert first["writer"] and not second["writer"]
    assert first["agreed"] == second["agreed"] == [10, 7]  # process 0's values, on both
    assert first["split_across_processes"] and second["split_across_processes"]
    assert first["restored"] == second["restored"] == first["expected"]  # gathered, saved once, read by both
    assert "set mesh.devices=0" in first["part_mesh"], first["part_mesh"]  # a mesh over some processes' devices
    assert second["writes"] == [], second["writes"]
    written = "\n".join(first["writes"])
    assert "ckpt/1" in written and "log/metrics.jsonl" in written, written


@pytest.mark.slow  # 150-235 s under a load of ~9 on the 2-core machine: pretrain + grow + cell in each process
def test_two_processes_equal_one(tmp_path):
    first, second = _two_processes(tmp_path, "full", timeout=900)
    assert first["writer"] and not second["writer"] and second["writes"] == []
    assert first["saved"] == second["saved"] and first["restored"] == second["restored"]
    assert len(first["cells"]) == 1 and first["cells"] == second["cells"]  # the same rows, computed by both
    written = "\n".join(first["writes"])
    for name in ("results.jsonl", "checkpoints/6", "pretrain/", "metrics.jsonl", "seq_losses/"):
        assert name in written, (name, written)

    # The same run in this process on one device (the plain path).
    assert len(jax.devices()) == 1
    cfg = hosts_worker.config(tmp_path, "one", MeshConfig(devices=1))
    one_dir = pretrain.run(cfg)
    rows = [json.loads(line) for line in runner.run(cfg).read_text().splitlines()]
    two = train.load_state(Path(first["run_dir"]), hosts_worker.STEPS, cfg)[2]
    one = train.load_state(one_dir, hosts_worker.STEPS, cfg)[2]
    pairs = zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True)
    diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in pairs]
    assert max(diffs) < 1e-5, max(diffs)  # float reassociation of the gradient sums only
    single = {(r["candidate"], r["lag"], r["metric"]): r["value"] for r in rows if r["metric"] != "wall_time"}
    multi = {(c, lag, m): v for c, lag, m, v in first["cells"][0]}
    assert single.keys() == multi.keys()
    assert max(abs(single[k] - multi[k]) for k in single if single[k] is not None) < 1e-4


def test_a_launch_without_its_coordinator_is_one_line(monkeypatch):
    monkeypatch.setenv(hosts.COUNT, "2")
    monkeypatch.delenv(hosts.ADDRESS, raising=False)
    monkeypatch.setenv(hosts.INDEX, "1")
    with pytest.raises(hosts.HostsError, match="JAX_COORDINATOR_ADDRESS=host:port"):
        hosts.initialize()
    monkeypatch.setenv(hosts.COUNT, "1")
    hosts.initialize()  # one process: nothing to start
    assert not hosts.several() and hosts.is_writer()


def test_each_process_keeps_its_own_hydra_log_directory(monkeypatch):
    from omegaconf import OmegaConf

    from growth.config import register_configs

    register_configs()
    run_dir = OmegaConf.create({"dir": "hydra/now${process_tag:}"})
    for name in ("JAX_NUM_PROCESSES", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert run_dir.dir == "hydra/now"  # one process: the directory of every run so far
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert run_dir.dir == "hydra/now-p1"
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    assert run_dir.dir == "hydra/now-p0"
