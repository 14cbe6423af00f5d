"""Run in a subprocess with 4 fake CPU devices by tests/test_mesh.py: data parallelism against one device."""

import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from growth.config import GrowthConfig, MeshConfig
from growth.data import pipeline as data_lib
from growth.distributed import mesh
from growth.experiment import pool, pretrain, runner
from growth.models import gpt as model_lib
from growth.store import checkpoint
from growth.training import train
from growth.widen import grow
from tests.conftest import tiny_config


def _max_diff(a, b) -> float:
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max())
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def main(tmp: Path) -> dict:
    assert len(jax.devices()) == 4, jax.devices()
    base = tiny_config(tmp)
    base = dataclasses.replace(
        base,
        pretrain=dataclasses.replace(
            base.pretrain, steps=6, checkpoint_steps=[6], save_every=6, eval_every=6, log_every=6
        ),
        pool=["exact_copy", "perturbative"],
        regimes=["deterministic"],
        growth_step=6,
        probe_lag=2,
        continuation_lag=4,
        runner=dataclasses.replace(base.runner, batch_size=8, eval_every=2),
    )
    out = {}
    states, cells = {}, {}
    for label, mcfg in {
        "one": MeshConfig(devices=1),
        "dp4": MeshConfig(devices=4),
        "fsdp4": MeshConfig(devices=4, fsdp=True),
    }.items():
        cfg = dataclasses.replace(base, out_dir=str(tmp / label), mesh=mcfg)
        run_dir = pretrain.run(cfg)
        states[label] = train.load_state(run_dir, 6, cfg)[2]
        rows = [json.loads(line) for line in runner.run(cfg).read_text().splitlines()]
        cells[label] = {(r["candidate"], r["metric"], r["lag"]): r["value"] for r in rows if r["metric"] != "wall_time"}
    for label in ("dp4", "fsdp4"):
        out[f"pretrain_{label}_max_diff"] = _max_diff(states["one"].params, states[label].params)
        common = cells["one"].keys() & cells[label].keys()
        out[f"cell_{label}_rows"] = len(common)
        out[f"cell_{label}_max_diff"] = max(
            abs(cells["one"][k] - cells[label][k]) for k in common if cells["one"][k] is not None
        )

    # A sharded (FSDP) state saved and restored, then grown: the function is preserved.
    cfg = dataclasses.replace(base, out_dir=str(tmp / "ckpt"))
    m = mesh.make(MeshConfig(devices=4))
    sharded = mesh.put_state(m, states["one"], fsdp=True)
    out["sharded_leaves"] = sum(not x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded.params))
    ckpt = Path(cfg.out_dir) / "run" / "checkpoints"
    checkpoint.save(checkpoint.manager(ckpt), 6, sharded, {})
    restored = mesh.put_state(m, train.load_state(ckpt.parent, 6, cfg)[2], fsdp=True)
    out["restore_max_diff"] = _max_diff(restored, states["one"])
    grown = grow("exact_copy", restored, cfg.model, GrowthConfig(k=2), cfg.optim, jax.random.PRNGKey(3))
    tokens = jnp.asarray(np.arange(32).reshape(2, 16) % cfg.model.vocab_size)
    small_graphdef, _ = model_lib.abstract(cfg.model)
    wide_graphdef, _ = model_lib.abstract(grown.model_cfg)
    small = jax.jit(lambda p, t: model_lib.apply(small_graphdef, p, t))(restored.params, tokens)
    wide = jax.jit(lambda p, t: model_lib.apply(wide_graphdef, p, t))(grown.state.params, tokens)
    out["growth_max_logit_diff"] = float(jnp.abs(small - wide).max())
    out["logit_scale"] = float(jnp.abs(small).max())
    # Evaluation chunks split over the data axis give the unsplit losses.
    eval_set = np.asarray(data_lib.load(cfg.data).eval_BxT1)
    chunk = next(train.chunks(eval_set, 4, m))
    out["eval_chunk_split"] = not chunk.sharding.is_fully_replicated and len(chunk.sharding.device_set) == 4
    replicated = mesh.put_state(m, states["one"].params)
    out["eval_split_diff"] = abs(
        train.make_eval_fn(small_graphdef, 4, m)(replicated, eval_set)
        - train.make_eval_fn(small_graphdef, 4)(states["one"].params, eval_set)
    )
    out["eval_seq_split_diff"] = float(
        np.abs(
            pool.measure_small(cfg.model, replicated, eval_set, 4, m)
            - pool.measure_small(cfg.model, states["one"].params, eval_set, 4)
        ).max()
    )
    out["eval_sequences"] = len(eval_set)
    try:
        mesh.check_batch(m, 6, "pretrain.batch_size")
    except mesh.MeshError as e:
        out["bad_batch_message"] = str(e)
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
