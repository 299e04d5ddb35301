"""Token counting and length fitting shared by every generator.

A generator builds a prompt from a fixed part plus a growing number of small *units* (filler
sentences, haystack sentences, words) and asks `fit_to_length` for the number of units that lands the
whole prompt within a tolerance of a target token count. Units are whole sentences, so nothing is ever
cut mid-sentence.

Counting works with any tokenizer exposing ``encode(text, add_special_tokens=False)`` (Hugging Face)
or plain ``encode(text)`` (tiktoken). Without a tokenizer we fall back to ``ceil(len(text) / 4)``,
the usual ~4 characters per English token; samples record which unit was used in
``meta["length_unit"]`` so nobody mistakes fallback lengths for model tokens.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

CHARS_PER_TOKEN_FALLBACK = 4
FALLBACK_UNIT = "approx_tokens(ceil(chars/4))"


class LengthError(ValueError):
    """The fixed part of a prompt is already longer than the target, or units cannot reach it."""


class TokenCounter:
    """Count tokens of a text with a tokenizer, or with the documented 4-chars-per-token fallback."""

    def __init__(self, tokenizer=None):
        if tokenizer is not None and not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(f"tokenizer must have an encode() method, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer

    @property
    def unit(self) -> str:
        """What `count` measures, recorded in sample meta as ``length_unit``."""
        if self.tokenizer is None:
            return FALLBACK_UNIT
        name = getattr(self.tokenizer, "name_or_path", None) or getattr(self.tokenizer, "name", None)
        return f"tokens({name or type(self.tokenizer).__name__})"

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise RuntimeError("encode() needs a tokenizer; the fallback counter only counts")
        try:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        except TypeError:  # tiktoken and friends have no add_special_tokens argument
            return list(self.tokenizer.encode(text))

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN_FALLBACK)
        return len(self.encode(text))

    @property
    def can_decode(self) -> bool:
        return self.tokenizer is not None and callable(getattr(self.tokenizer, "decode", None))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def tokens_per_char(self, sample: str) -> float:
        """Estimate tokens/char from a sample (a prefix of the units): cheap, good to a few percent."""
        if not sample:
            return 1.0 / CHARS_PER_TOKEN_FALLBACK
        return max(self.count(sample), 1) / len(sample)


def as_counter(tokenizer_or_counter) -> TokenCounter:
    if isinstance(tokenizer_or_counter, TokenCounter):
        return tokenizer_or_counter
    return TokenCounter(tokenizer_or_counter)


def annotate_lengths(samples, tokenizer) -> None:
    """Record each loaded sample's prompt length (meta n_tokens, length_unit) in `tokenizer`'s tokens."""
    counter = as_counter(tokenizer)
    for s in samples:
        s.meta["n_tokens"] = counter.count(s.prompt)
        s.meta["length_unit"] = counter.unit


class UnitPool:
    """A lazily extended list of text units with cumulative character counts.

    The source may be infinite (a filler generator) or finite (a haystack's sentences); `cycle=True`
    repeats a finite source, which is how a short haystack file still reaches a long target.
    """

    def __init__(self, source: Iterable[str], *, separator_chars: int = 1, cycle: bool = False):
        self._items = list(source) if cycle else None
        if cycle and not self._items:
            raise LengthError("empty haystack: nothing to fill the prompt with")
        self._it: Iterator[str] = iter(source) if not cycle else self._cycle()
        self.units: list[str] = []
        self._cum: list[int] = [0]
        self._sep = separator_chars
        self.exhausted = False
        self.repeated = False

    def _cycle(self) -> Iterator[str]:
        first = True
        while True:
            if not first:
                self.repeated = True
            yield from self._items
            first = False

    def _pull(self) -> bool:
        try:
            u = next(self._it)
        except StopIteration:
            self.exhausted = True
            return False
        self.units.append(u)
        self._cum.append(self._cum[-1] + len(u) + self._sep)
        return True

    def ensure(self, k: int) -> int:
        """Make at least k units available (fewer if the source ends); return how many there are."""
        while len(self.units) < k and self._pull():
            pass
        return len(self.units)

    def chars(self, k: int) -> int:
        self.ensure(k)
        return self._cum[min(k, len(self.units))]

    def k_for_chars(self, n_chars: float) -> int:
        """Number of units whose cumulative size is closest to n_chars."""
        if n_chars <= 0:
            return 0
        while self._cum[-1] < n_chars and self._pull():
            pass
        k = bisect.bisect_left(self._cum, n_chars)
        k = min(k, len(self.units))
        # pick the closer of k-1 and k so the estimate lands on the target, not always above it
        if k > 0 and abs(self._cum[k - 1] - n_chars) < abs(self._cum[k] - n_chars):
            k -= 1
        return k

    def sample_text(self, n_chars: int = 6000) -> str:
        k = self.k_for_chars(n_chars) + 1
        self.ensure(k)
        return " ".join(self.units[:k])


@dataclass
class Fit:
    text: str
    n_tokens: int
    n_units: int


def fit_to_length(
    render: Callable[[list[str]], str],
    pool: UnitPool,
    target: int,
    counter: TokenCounter,
    *,
    tol: float = 0.05,
    max_exact: int = 8,
) -> Fit:
    """Choose how many units to render so that count(render(units[:k])) is within tol of target.

    Strategy (cheap for 128k-token prompts): count the fixed part once, estimate tokens/char from a
    tokenized sample of the units, jump to the k the estimate predicts, count exactly, re-estimate the
    ratio from that measurement and repeat (converges in 1-3 exact counts); if the ratio keeps missing,
    finish with a bisection on k. Every returned text has been counted exactly.
    """
    if target <= 0:
        raise LengthError(f"target length must be positive, got {target}")
    lo, hi = target * (1 - tol), target * (1 + tol)
    base_text = render([])
    base = counter.count(base_text)
    if base > hi:
        raise LengthError(f"the fixed part alone is {base} {counter.unit}, above the target {target} (+{tol:.0%})")
    ratio = counter.tokens_per_char(pool.sample_text())
    tried: dict[int, int] = {0: base}
    texts: dict[int, str] = {0: base_text}

    def measure(k: int) -> int:
        if k not in tried:
            texts[k] = render(pool.units[:k])
            tried[k] = counter.count(texts[k])
        return tried[k]

    k = pool.k_for_chars((target - base) / max(ratio, 1e-9))
    best: int | None = None
    for it in range(max_exact):
        n = measure(k)
        if lo <= n <= hi:
            if best is None or abs(n - target) < abs(tried[best] - target):
                best = k
            # Inside the window: stop when close (a quarter of the tolerance) or after a few refinements.
            if abs(n - target) <= tol * target / 4 or it >= 3:
                break
        if n < lo and pool.exhausted and k >= len(pool.units):
            raise LengthError(f"ran out of units at {n} {counter.unit} (target {target})")
        added = pool.chars(k)
        if k > 0 and n > base:
            ratio = (n - base) / added
        k_new = pool.k_for_chars((target - base) / max(ratio, 1e-9))
        if k_new in tried:  # the estimate is stuck on a k already measured: step instead
            k_new = k + 1 if n < target else max(k - 1, 0)
            if k_new in tried:
                break
        k = k_new
    if best is not None:
        return Fit(texts[best], tried[best], best)
    # Bisection fallback on the smallest k whose count reaches lo.
    lo_k, hi_k = 0, max(k, 1)
    while measure(hi_k) < lo:
        if pool.exhausted and hi_k >= len(pool.units):
            raise LengthError(f"ran out of units at {measure(hi_k)} {counter.unit} (target {target})")
        lo_k, hi_k = hi_k, hi_k * 2
        pool.ensure(hi_k)
        hi_k = min(hi_k, len(pool.units)) if pool.exhausted else hi_k
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        if measure(mid) < lo:
            lo_k = mid
        else:
            hi_k = mid
    n = measure(hi_k)
    if not (lo <= n <= hi):
        raise LengthError(
            f"cannot land within {tol:.0%} of {target} {counter.unit}: one unit is too coarse (got {n}); "
            "use a larger target or a finer unit"
        )
    return Fit(texts[hi_k], n, hi_k)
