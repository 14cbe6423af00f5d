"""Data parallelism on a 4-device mesh (fake CPU devices, in a subprocess) equals one device."""

import json
import os
import subprocess
import sys

from growth.config import MeshConfig
from growth.distributed import mesh
from tests.conftest import REPO


# ~70 s on the 2-core machine when quiet (it timed out at 600 s under a load of 15).
def test_four_devices_equal_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.mesh_worker", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for label in ("dp4", "fsdp4"):
        assert got[f"pretrain_{label}_max_diff"] < 1e-5, got  # float reassociation of the gradient sums only
        assert got[f"cell_{label}_rows"] > 10 and got[f"cell_{label}_max_diff"] < 1e-4, got
    assert got["sharded_leaves"] > 0 and got["restore_max_diff"] == 0.0, got
    assert got["logit_scale"] > 0.1 and got["growth_max_logit_diff"] < 1e-4, got
    assert "pretrain.batch_size=6 does not divide over the 4 devices" in got["bad_batch_message"]
    assert got["eval_chunk_split"] and got["eval_sequences"] >= 8, got  # two chunks of 4, one row per device
    assert got["eval_split_diff"] < 1e-6 and got["eval_seq_split_diff"] < 1e-6, got


def test_one_device_is_the_plain_path():
    assert mesh.make(MeshConfig(devices=1)) is None
    tree = {"w": [1.0, 2.0]}
    assert mesh.put_state(None, tree) is tree
