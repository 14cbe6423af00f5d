"""Part 4: the same model and batch trained by Hugging Face GPT-2 and torch.optim.AdamW on the CPU."""

from __future__ import annotations

import os

from benchmarks.common import Preset
from growth.config import Activation, Config, ModelConfig, Norm


def adamw(model, o, stacked: int = 0, **impl):
    """torch AdamW with our hyperparameters; weight decay on matrices only, as growth.training.optimizer.decay_mask.

    `model`: a module, or a list of its parameters with `stacked` leading axes (models stacked for vmap).
    """
    import torch

    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    decay = [q for q in params if q.ndim - stacked >= 2]
    no_decay = [q for q in params if q.ndim - stacked < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.b1, o.b2), eps=o.eps, **impl)


def torch_missing() -> str | None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        return f"skipped: {e.name} is not installed (pip install -e '.[torch]')"
    return None


def gpt2(model_cfg: ModelConfig):
    """GPT2LMHeadModel with our shapes: untied lm_head without bias, gelu_new, no dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if model_cfg.norm != Norm.layernorm or model_cfg.activation != Activation.gelu_tanh:
        raise ValueError("the GPT-2 peer matches only model.norm=layernorm and model.activation=gelu_tanh")
    hf = GPT2Config(
        vocab_size=model_cfg.vocab_size,
        n_positions=model_cfg.context,
        n_embd=model_cfg.d_model,
        n_layer=model_cfg.n_layers,
        n_head=model_cfg.n_heads,
        n_inner=model_cfg.mlp_ratio * model_cfg.d_model,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=model_cfg.norm_eps,
        tie_word_embeddings=model_cfg.tie_embeddings,
        bos_token_id=model_cfg.vocab_size - 1,  # GPT-2's 50256 lies outside a small vocabulary
        eos_token_id=model_cfg.vocab_size - 1,
    )
    return GPT2LMHeadModel(hf)


def torch_runner(cfg: Config, model_cfg: ModelConfig, batch_size: int, p: Preset, threads: int):
    """(run, facts): `p.steps_per_rep` steps of forward, backward, global-norm clip and AdamW.

    The same work as growth.training.train's step; the learning-rate schedule is left out (it costs nothing
    measurable in either framework).
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = gpt2(model_cfg).train()
    o = cfg.optim
    opt = adamw(model, o, foreach=True)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, model_cfg.vocab_size, (batch_size, model_cfg.context + 1), generator=gen)
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step():
        logits = model(inputs).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm)
        opt.step()
        return loss

    def run():
        torch.set_num_threads(threads)  # a process-wide setting: set it for every repetition
        for _ in range(p.steps_per_rep):
            loss = step()
        loss.item()

    run()  # warm-up: allocator, oneDNN primitives
    facts = {
        "torch": torch.__version__,
        "threads": threads,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "params": sum(q.numel() for q in model.parameters()),
        "batch_size": batch_size,
        "tokens_per_rep": batch_size * model_cfg.context * p.steps_per_rep,
    }
    return run, facts


def peer_threads() -> list[int]:
    """The core count (the usual setting) and, on a machine with more than 2 cores, one thread."""
    cores = os.cpu_count() or 1
    return [cores, 1] if cores > 2 else [cores]


# ---------------------------------------------------------------- the best-practice peer


def best_practice_model(model_cfg: ModelConfig):
    """The same GPT as a practitioner writes a small one in PyTorch today.

    One fused qkv Linear, `F.scaled_dot_product_attention(is_causal=True)`, pre-LayerNorm blocks with
    tanh GELU, an untied bias-free lm_head; the same parameter count as ours and as the GPT-2 peer.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    if model_cfg.norm != Norm.layernorm or model_cfg.activation != Activation.gelu_tanh or model_cfg.tie_embeddings:
        raise ValueError("the best-practice peer matches layernorm, gelu_tanh and an untied lm_head only")
    d, h, f = model_cfg.d_model, model_cfg.n_heads, model_cfg.mlp_ratio * model_cfg.d_model
    eps = model_cfg.norm_eps

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
            self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.proj = nn.Linear(d, f), nn.Linear(f, d)

        def forward(self, x):
            B, L, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(B, L, d))
            return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(model_cfg.vocab_size, d)
            self.pos = nn.Embedding(model_cfg.context, d)
            self.blocks = nn.ModuleList([Block() for _ in range(model_cfg.n_layers)])
            self.ln_f = nn.LayerNorm(d, eps=eps)
            self.lm_head = nn.Linear(d, model_cfg.vocab_size, bias=False)
            for p in self.parameters():
                if p.ndim >= 2:
                    nn.init.normal_(p, std=model_cfg.init_std)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            for b in self.blocks:
                x = b(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def best_practice_runner(cfg: Config, model_cfg: ModelConfig, batch_size: int, p: Preset, threads: int, compiled: bool):
    """(run, facts): `p.steps_per_rep` steps of the best-practice peer, eager or under torch.compile.

    `F.cross_entropy`, global-norm clipping, `torch.optim.AdamW(fused=True)` with decay on matrices.
    Compilation covers the model's forward and backward (`torch.compile(model)`); the optimizer's
    fused kernel is already one call per step.
    """
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = best_practice_model(model_cfg).train()
    o = cfg.optim
    opt = adamw(model, o, fused=True)
    fwd = torch.compile(model) if compiled else model
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, model_cfg.vocab_size, (batch_size, model_cfg.context + 1), generator=gen)
    inputs, targets = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def step():
        logits = fwd(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm, foreach=True)
        opt.step()
        return loss

    def run():
        torch.set_num_threads(threads)
        for _ in range(p.steps_per_rep):
            loss = step()
        loss.item()

    run()  # warm-up (and compilation)
    facts = {
        "torch": torch.__version__,
        "threads": threads,
        "attn_implementation": "sdpa (is_causal), fused qkv" + (", torch.compile" if compiled else ", eager"),
        "params": sum(q.numel() for q in model.parameters()),
        "batch_size": batch_size,
        "tokens_per_rep": batch_size * model_cfg.context * p.steps_per_rep,
    }
    return run, facts
