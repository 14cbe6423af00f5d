"""A small GPT-Neo trained with its own tokenizer in transformers, for the import -> grow walkthrough.

    python examples/tiny_gpt_neo.py train --out HF_DIR [--steps 300]
    python examples/tiny_gpt_neo.py score HF_DIR [--context 128 --eval-sequences 64 --max-valid-docs 2000]

`train` fits a byte-level BPE (vocab 1024) on the in-tree TinyStories sample, trains a 2-layer GPT-Neo
with TinyStories-1M's options (tied embeddings, unscaled attention, global then local layers, gelu_new)
and saves it with its tokenizer.json. `score` prints the model's mean next-token loss (transformers,
its own tokenizer) on the held-out set the growth runner builds: validation documents each followed by
<|endoftext|>, packed in context + 1 windows, the first eval-sequences of them. Needs the torch extra.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import transformers

from growth.config import DataConfig
from growth.data import pipeline as data_lib

SAMPLE = data_lib.TINYSTORIES_DIR


def train(args) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = DataConfig(cache_dir=".cache")
    docs = data_lib.read_local_documents(SAMPLE / "TinyStories-train-sample.txt.xz", cfg, args.docs)
    tok = data_lib.train_tokenizer(docs, 1024, 2)
    eot = tok.token_to_id(data_lib.EOT)
    ids = np.asarray([i for enc in tok.encode_batch(docs) for i in [*enc.ids, eot]], np.int64)
    seq = torch.as_tensor(ids[: len(ids) // 128 * 128].reshape(-1, 128))  # labels shift inside the model
    hf_cfg = transformers.GPTNeoConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=128,
        attention_types=[[["global", "local"], 1]], window_size=32, bos_token_id=eot, eos_token_id=eot,
        embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0,
    )  # fmt: skip
    model = transformers.GPTNeoForCausalLM(hf_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    for step in range(args.steps):
        batch = seq[torch.randint(len(seq), (16,), generator=gen)]
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f}")
    out = Path(args.out)
    model.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    print(out)


def score(args) -> None:
    model = transformers.GPTNeoForCausalLM.from_pretrained(args.hf_dir).eval()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(Path(args.hf_dir) / "tokenizer.json"))
    eot = tok.convert_tokens_to_ids(data_lib.EOT)
    cfg = DataConfig(cache_dir=".cache")
    docs = data_lib.read_local_documents(args.valid, cfg, args.max_valid_docs, "valid")
    ids = np.asarray([i for d in docs for i in [*tok(d)["input_ids"], eot]], np.int64)
    n = args.context + 1
    seq = torch.as_tensor(ids[: len(ids) // n * n].reshape(-1, n)[: args.eval_sequences])
    with torch.no_grad():
        logits = model(seq[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
    print(f"{loss.item():.6f} mean loss over {seq.shape[0]} x {args.context} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--docs", type=int, default=2000)
    t.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("score")
    s.add_argument("hf_dir")
    s.add_argument("--valid", default=str(SAMPLE / "TinyStories-valid-sample.txt.xz"))
    s.add_argument("--context", type=int, default=128)
    s.add_argument("--eval-sequences", type=int, default=64)
    s.add_argument("--max-valid-docs", type=int, default=2000)
    args = parser.parse_args()
    train(args) if args.cmd == "train" else score(args)


if __name__ == "__main__":
    main()
