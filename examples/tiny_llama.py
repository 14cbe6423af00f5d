"""Import -> grow, end to end, on a tiny Hugging Face Llama (or Qwen2) built from a config.

    python examples/tiny_llama.py --out DIR [--kind llama|qwen2] [--steps 200] [GROW OVERRIDES ...]

1. Fits a byte-level BPE (vocab 1024) on the in-tree TinyStories sample, builds a 2-layer
   LlamaForCausalLM (d 64, 4 query heads sharing 2 kv heads, SwiGLU 176, RoPE theta 10000, untied)
   or a Qwen2ForCausalLM of the same shape (q/k/v biases), trains it `--steps` AdamW steps in
   transformers and saves it with save_pretrained plus its tokenizer.json in DIR/hf.
2. Imports it as a step-0 base run (`python -m experiments.import_hf --path DIR/hf --out DIR/run`).
3. Grows it with the runner (`python -m experiments.grow runner.base_dir=DIR/run growth_step=0
   data=local ... 'pool=[exact_copy,continue_small]' 'regimes=[deterministic]' out_dir=DIR/out`).
4. Prints exact_copy's lag-0 max logit difference, and continue_small's lag-0 eval loss next to the
   loss transformers gives on the same held-out tokens.
Needs the torch extra (pip install -e '.[torch]'). Nothing is downloaded.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers
from hydra import compose, initialize_config_dir

from growth.config import DataConfig, register_configs
from growth.data import pipeline as data_lib
from growth.experiment import base_run, runner
from growth.interop import hf_import
from growth.store.files import read_jsonl
from growth.validate import to_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = data_lib.TINYSTORIES_DIR
SHAPE = dict(
    hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=128, rope_theta=10000.0, tie_word_embeddings=False,
)  # fmt: skip


def build_and_train(kind: str, steps: int, out: Path) -> None:
    torch.manual_seed(0)
    docs = data_lib.read_local_documents(SAMPLE / "TinyStories-train-sample.txt.xz", DataConfig(), 2000)
    tok = data_lib.train_tokenizer(docs, 1024, 2)
    eot = tok.token_to_id(data_lib.EOT)
    fields = SHAPE | dict(vocab_size=tok.get_vocab_size(), bos_token_id=eot, eos_token_id=eot)
    if kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**fields))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields))
    ids = np.asarray([i for enc in tok.encode_batch(docs) for i in [*enc.ids, eot]], np.int64)
    seq = torch.as_tensor(ids[: len(ids) // 128 * 128].reshape(-1, 128))  # labels shift inside the model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        batch = seq[torch.randint(len(seq), (16,), generator=gen)]
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f}")
    model.eval().save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))


def grow(run_dir: Path, out: Path, overrides: list[str]):
    register_configs()
    args = [
        f"runner.base_dir={run_dir}", "growth_step=0", "data=local",
        f"data.train_path={SAMPLE / 'TinyStories-train-sample.txt.xz'}",
        f"data.valid_path={SAMPLE / 'TinyStories-valid-sample.txt.xz'}",
        "pool=[exact_copy,continue_small]", "regimes=[deterministic]", f"out_dir={out}",
        "logger.wandb.mode=disabled", *overrides,
    ]  # fmt: skip
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        cfg = to_config(compose("config", overrides=args))
    return cfg, read_jsonl(runner.run(cfg))


def transformers_loss(hf_dir: Path, cfg) -> float:
    """The HF model's mean next-token loss on the runner's held-out sequences (the imported tokenizer's ids)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    eval_BxT1 = data_lib.load(base_run.with_base_run(cfg).data).eval_BxT1
    with torch.no_grad():
        batch = torch.as_tensor(eval_BxT1.astype(np.int64))
        logits = model(batch[:, :-1]).logits
        return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="working directory: OUT/hf, OUT/run, OUT/out")
    parser.add_argument("--kind", choices=["llama", "qwen2"], default="llama")
    parser.add_argument("--steps", type=int, default=200, help="transformers training steps before the import")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra growth overrides, e.g. continuation_lag=32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    hf_dir, run_dir = out / "hf", out / "run"
    build_and_train(args.kind, args.steps, hf_dir)
    print("imported:", hf_import.import_to_run_dir(hf_dir, run_dir))
    cfg, rows = grow(run_dir, out / "out", args.overrides)
    v = {(r["candidate"], r["lag"], r["metric"]): r["value"] for r in rows}
    summary = {
        "kind": args.kind,
        "exact_copy_lag0_max_logit_diff": v[("exact_copy", 0, "max_logit_diff")],
        "continue_small_lag0_eval_loss": v[("continue_small", 0, "eval_loss")],
        "transformers_eval_loss": transformers_loss(hf_dir, cfg),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
