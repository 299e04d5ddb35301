"""A stand-in for a Hugging Face tokenizer shared by the task tests: words, punctuation and whitespace runs are
tokens, and decode is lossless."""

import re


class RegexTokenizer:
    """Stand-in for a Hugging Face tokenizer with a lossless decode."""

    name_or_path = "regex-test"
    _pat = re.compile(r"\s+|\w+|[^\w\s]")

    def __init__(self):
        self.vocab, self.inv = {}, []

    def encode(self, text, add_special_tokens=False):
        ids = []
        for piece in self._pat.findall(text):
            if piece not in self.vocab:
                self.vocab[piece] = len(self.inv)
                self.inv.append(piece)
            ids.append(self.vocab[piece])
        return ids

    def decode(self, ids):
        return "".join(self.inv[i] for i in ids)
