"""Tiny randomly initialised models of every supported architecture and an offline byte-level tokenizer.

Built in code (no download) so unit tests, notebook smoke runs and CI never need the network or a big model.
"""

from __future__ import annotations

import functools

import torch

TINY_ARCHS = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe")
TINY_PREFIX = "tiny-"  # model names "tiny-<arch>" load a tiny random model (load_model, the run CLI, the workbook)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """A byte-level BPE tokenizer (vocab 384) trained in code on a fixed text, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "The quick brown fox jumps over the lazy dog. Paris is the capital of France.",
        "name price weight product company doctor hospital movie director year {\"name\": \"x\"} [ ] , : 0123456789",
    ] * 20
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(arch: str = "qwen2", *, n_layers: int = 2, n_heads: int = 4, n_kv_heads: int = 2, head_dim: int = 16,
                vocab_size: int = 384, rope_scaling: dict | None = None, max_position_embeddings: int = 8192):
    """A small config of `arch` with GQA group n_heads // n_kv_heads."""
    from transformers import AutoConfig

    if arch not in TINY_ARCHS:
        raise ValueError(f"arch {arch!r} not supported; choose from {TINY_ARCHS}")
    hidden = n_heads * head_dim
    kw = dict(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads, head_dim=head_dim, vocab_size=vocab_size, max_position_embeddings=max_position_embeddings,
        rope_theta=10000.0, tie_word_embeddings=False, eos_token_id=2, bos_token_id=None, pad_token_id=0,
    )
    if arch == "qwen3_moe":
        kw.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=hidden, decoder_sparse_step=1, mlp_only_layers=[])
    if arch == "mistral":
        kw.update(sliding_window=None)
    cfg = AutoConfig.for_model(arch, **kw)
    if rope_scaling is not None:
        params = dict(rope_scaling)
        params.setdefault("rope_theta", 10000.0)
        cfg.rope_parameters = params
        cfg.rope_scaling = params
    return cfg


def tiny_model(arch: str = "qwen2", seed: int = 0, dtype=torch.float32, device: str = "cpu", **kw):
    """(model, tokenizer): a randomly initialised tiny `arch` model with the tiny tokenizer, eval mode."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(arch, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    # Larger random weights make attention peaky, so sparse selection actually matters in tests.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(4.0)
    model.generation_config.eos_token_id = tiny_tokenizer().eos_token_id
    return model.to(device).eval(), tiny_tokenizer()


def load_tiny(name: str, dtype=None, device: str | None = None, seed: int = 0):
    """(model, tokenizer) for a model name "tiny-<arch>"; unknown architectures raise listing the allowed names."""
    arch = name[len(TINY_PREFIX):] if name.startswith(TINY_PREFIX) else None
    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny model {name!r}; allowed: {', '.join(TINY_PREFIX + a for a in TINY_ARCHS)}")
    return tiny_model(arch, seed=seed, dtype=dtype or torch.float32, device=device or "cpu")
