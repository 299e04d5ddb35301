"""kernels.common.rope_table caches by the rotary's frequencies, never by the rope function's id."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from shadowkv_lab.attention import make_rope, rope_freq_key, rotary_module  # noqa: E402
from shadowkv_lab.kernels import common  # noqa: E402
from shadowkv_lab.testing import tiny_model  # noqa: E402


def _direct(rope, n, d):
    x = torch.zeros(1, n, d)
    x[..., : d // 2] = 1
    return rope(x, torch.arange(n).unsqueeze(0)).reshape(n, d)


class _Rope:
    """A rope function object whose frequencies can change while its id stays the same (a recycled id)."""

    def __init__(self, theta: float, d: int):
        self.set(theta, d)

    def set(self, theta: float, d: int):
        self.inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
        self.freq_key = ("default", tuple(self.inv.tolist()), 1.0)

    def __call__(self, x, pos):
        f = pos.float()[..., None] * self.inv
        cos, sin = torch.cat([f.cos(), f.cos()], -1), torch.cat([f.sin(), f.sin()], -1)
        return x * cos + torch.cat([-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]], -1) * sin


def test_same_id_new_frequencies_get_a_fresh_table():
    rope, d = _Rope(10000.0, 16), 16
    first = common.rope_table(rope, 64, d, torch.float32, "cpu").clone()
    ident = id(rope)
    rope.set(500.0, d)  # a new model's rotary behind the same id
    assert id(rope) == ident
    second = common.rope_table(rope, 64, d, torch.float32, "cpu")
    assert not torch.equal(first, second)
    assert torch.equal(second[:64], _direct(rope, 64, d))


def test_models_with_the_same_rotary_share_a_table_and_others_do_not():
    a, _ = tiny_model("qwen2")
    b, _ = tiny_model("qwen2", seed=1)
    c, _ = tiny_model("qwen2", rope_scaling={"rope_type": "default", "rope_theta": 500.0})
    ra, rb, rc = make_rope(a), make_rope(b), make_rope(c)
    assert ra.freq_key == rb.freq_key != rc.freq_key == rope_freq_key(rotary_module(c))
    d = a.config.hidden_size // a.config.num_attention_heads
    ta = common.rope_table(ra, 32, d, torch.float32, "cpu")
    assert common.rope_table(rb, 32, d, torch.float32, "cpu") is ta
    tc = common.rope_table(rc, 32, d, torch.float32, "cpu")
    assert torch.equal(tc[:32], _direct(rc, 32, d)) and not torch.equal(tc[:32], ta[:32])


def test_rope_without_frequencies_is_not_cached():
    rope = _Rope(10000.0, 8)
    rope.freq_key = None
    n = len(common._ROPE_TABLES)
    tab = common.rope_table(rope, 16, 8, torch.float32, "cpu")
    assert torch.equal(tab, _direct(rope, 16, 8)) and len(common._ROPE_TABLES) == n
