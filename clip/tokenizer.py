"""CLIP's byte-level BPE tokenizer.

Token ids must match OpenAI's tokenizer exactly: the text encoder's embedding table and its
EOT pooling (argmax of the ids) are only meaningful for those ids.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import ftfy
import regex
import torch

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
BOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
NUM_MERGES = 49152 - 256 - 2  # the vocabulary is 256 bytes x 2 (plain, word-final) + merges + BOT/EOT

# Special tokens, English contractions, letter runs, single digits, and runs of anything else.
# Case-insensitive like OpenAI's pattern, which matters for the contraction literals only.
_WORD_PATTERN = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>"
    r"|'(?:s|t|re|ve|m|ll|d)"
    r"|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")


@lru_cache
def byte_to_unicode() -> dict[int, str]:
    """Map every byte to a printable character so BPE works on strings without control or space chars.

    Printable Latin-1 bytes map to themselves; the other bytes take code points from 256 on, in byte order.
    The dict's iteration order (printable bytes first) defines the first 256 token ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = (b for b in range(256) if b not in table)
    table.update({b: chr(256 + n) for n, b in enumerate(extra)})
    return table


def clean_text(text: str) -> str:
    """Fix mojibake, undo (double) HTML escaping, collapse whitespace and lowercase, as CLIP was trained."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class Tokenizer:
    """Byte-level BPE over CLIP's 49408-token vocabulary."""

    def __init__(self, vocab_file: str | Path = VOCAB_FILE) -> None:
        with gzip.open(vocab_file) as f:
            lines = f.read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]  # line 0 is a version header
        symbols = list(byte_to_unicode().values())
        vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), BOT_TOKEN, EOT_TOKEN]
        self.encoder: dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self.decoder: dict[int, str] = {i: token for token, i in self.encoder.items()}
        self.merge_ranks: dict[tuple[str, ...], int] = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = byte_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.bot_id = self.encoder[BOT_TOKEN]
        self.eot_id = self.encoder[EOT_TOKEN]
        self._cache: dict[str, list[str]] = {BOT_TOKEN: [BOT_TOKEN], EOT_TOKEN: [EOT_TOKEN]}

    def __len__(self) -> int:
        return len(self.encoder)

    def bpe(self, word: str) -> list[str]:
        """Split one pre-tokenized word (already byte-mapped) into vocabulary symbols.

        Repeatedly merges the adjacent pair with the lowest merge rank, every occurrence left to right,
        until no adjacent pair is a known merge. The last symbol carries the end-of-word marker.
        """
        if word in self._cache:
            return self._cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            best = min(pairwise(parts), key=lambda pair: self.merge_ranks.get(pair, len(self.merge_ranks)))
            if best not in self.merge_ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOT/EOT."""
        ids: list[int] = []
        for word in _WORD_PATTERN.findall(clean_text(text)):
            mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[symbol] for symbol in self.bpe(mapped))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of the byte mapping; each word-final symbol becomes a trailing space, as OpenAI's decode."""
        symbols = "".join(self.decoder[int(i)] for i in ids)
        raw = bytes(self.byte_decoder[c] for c in symbols)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")


@lru_cache
def default_tokenizer() -> Tokenizer:
    """The shared tokenizer over the shipped vocabulary, built on first use (reading it takes ~0.2 s)."""
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
    """Encode texts as ``[BOT, ids..., EOT, 0...]`` rows of length ``context_length``.

    Too long a text raises, naming it, unless ``truncate``: then it is cut and its last id replaced by EOT,
    so the EOT pooling of the text encoder still finds a position.
    """
    tokenizer = default_tokenizer()
    if isinstance(texts, str):
        texts = [texts]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [tokenizer.bot_id, *tokenizer.encode(text), tokenizer.eot_id]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text!r} is too long for context length {context_length}")
            ids = [*ids[: context_length - 1], tokenizer.eot_id]
        result[row, : len(ids)] = torch.tensor(ids)
    return result


def decode(tokens: Sequence[int] | torch.Tensor) -> str:
    """Text of one tokenized row: BOT is dropped and everything from the first EOT on (padding included)."""
    tokenizer = default_tokenizer()
    ids = [int(t) for t in tokens]
    if ids and ids[0] == tokenizer.bot_id:
        ids = ids[1:]
    if tokenizer.eot_id in ids:
        ids = ids[: ids.index(tokenizer.eot_id)]
    return tokenizer.decode(ids).strip()
