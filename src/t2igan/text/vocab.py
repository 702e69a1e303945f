"""Tokenizer and vocabulary, identical to the official AttnGAN / SSA-GAN / DF-GAN text processing.

Tokenizing (AttnGAN ``TextDataset.load_captions``): ``"\\ufffd\\ufffd"`` becomes a space, the caption is
lower-cased, tokens are the runs matched by ``\\w+`` (NLTK's ``RegexpTokenizer(r'\\w+')``), and non-ASCII
characters are dropped from each token (a token left empty is dropped).

Vocabulary (AttnGAN ``build_dictionary``): index 0 is ``<end>`` (also the padding id); the other words follow
in order of first appearance over the train captions and then the test captions, with no frequency threshold.
An official ``captions.pickle`` (``[train_captions, test_captions, ixtoword, wordtoix]``) is authoritative.

Unknown-word policy at inference (:meth:`Vocabulary.encode_prompt`): unknown words are dropped with a
:class:`VocabularyWarning` naming them; a prompt with no known word, an empty prompt or a non-string prompt is
a :class:`PromptError`. Prompts longer than ``max_words`` keep their first ``max_words`` words, with a warning.
Training captions longer than ``max_words`` keep a random subset of positions in their original order
(:func:`select_words`, the official ``get_caption`` rule).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t2igan.utils.io import read_json, write_json_atomic

__all__ = [
    "END_TOKEN",
    "EncodedPrompt",
    "PromptError",
    "Vocabulary",
    "VocabularyWarning",
    "select_words",
    "tokenize",
]

END_TOKEN = "<end>"
_WORD_RE = re.compile(r"\w+")
VOCAB_FORMAT = "t2igan.vocab/1"


class VocabularyWarning(UserWarning):
    """A prompt was changed to fit the vocabulary (unknown words dropped, or truncated)."""


class PromptError(ValueError):
    """A prompt cannot be encoded (empty, not text, or no known word)."""


def tokenize(text: str) -> list[str]:
    """Split a caption into tokens exactly as the official code does."""
    if not isinstance(text, str):
        raise TypeError(f"expected a caption string, got {type(text).__name__}")
    text = text.replace("\ufffd\ufffd", " ")
    tokens = []
    for tok in _WORD_RE.findall(text.lower()):
        tok = tok.encode("ascii", "ignore").decode("ascii")
        if tok:
            tokens.append(tok)
    return tokens


def select_words(
    ids: Sequence[int], max_words: int, rng: np.random.Generator | None = None
) -> list[int]:
    """Training-time rule for long captions: keep a random subset of ``max_words`` positions, in order.

    Captions with at most ``max_words`` words are returned unchanged.
    """
    ids = list(ids)
    if max_words <= 0:
        raise ValueError(f"max_words must be positive, got {max_words}")
    if len(ids) <= max_words:
        return ids
    rng = rng if rng is not None else np.random.default_rng()
    keep = np.sort(rng.permutation(len(ids))[:max_words])
    return [ids[i] for i in keep]


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt encoded for a text encoder."""

    text: str
    ids: list[int]
    words: list[str]
    unknown: list[str]
    truncated: bool


class Vocabulary:
    """Word <-> index mapping with ``<end>`` at index 0."""

    def __init__(self, words: Iterable[str]) -> None:
        words = list(words)
        if not words or words[0] != END_TOKEN:
            raise ValueError(f"a vocabulary must start with {END_TOKEN!r} at index 0")
        index: dict[str, int] = {}
        for i, w in enumerate(words):
            if not isinstance(w, str) or not w:
                raise ValueError(f"vocabulary entry {i} is not a non-empty string: {w!r}")
            if w in index:
                raise ValueError(f"vocabulary word {w!r} appears twice (indices {index[w]} and {i})")
            index[w] = i
        self._words = words
        self._index = index

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def build(cls, *token_lists: Iterable[Sequence[str]]) -> Vocabulary:
        """Build from tokenized captions (train first, then test), in order of first appearance."""
        seen: dict[str, None] = {END_TOKEN: None}
        for captions in token_lists:
            for tokens in captions:
                for w in tokens:
                    if w not in seen:
                        seen[w] = None
        return cls(seen.keys())

    @classmethod
    def from_ixtoword(cls, ixtoword: Mapping[int, str], *, source: str = "<ixtoword>") -> Vocabulary:
        """Build from an official ``ixtoword`` dict (index -> word), which must cover 0..N-1."""
        try:
            n = len(ixtoword)
            words = [ixtoword[i] for i in range(n)]
        except KeyError as exc:
            raise ValueError(f"{source}: ixtoword has no entry for index {exc.args[0]} (not contiguous)") from exc
        if words[0] != END_TOKEN:
            raise ValueError(f"{source}: index 0 is {words[0]!r}, expected {END_TOKEN!r}")
        return cls(words)

    @classmethod
    def from_captions_pickle(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read the vocabulary of an official ``captions.pickle`` / ``captions_DAMSM.pickle``."""
        from t2igan.utils.io import safe_load_pickle

        obj = safe_load_pickle(path)
        ixtoword = _official_ixtoword(obj, str(path))
        return cls.from_ixtoword(ixtoword, source=str(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read ``vocab.json`` (written by :meth:`save`) or an official captions pickle (by extension)."""
        path = Path(path)
        if path.suffix == ".pickle" or path.suffix == ".pkl":
            return cls.from_captions_pickle(path)
        data = read_json(path)
        if isinstance(data, dict) and "words" in data:
            words = data["words"]
        elif isinstance(data, list):
            words = data
        else:
            raise ValueError(f"{path}: expected a JSON object with a 'words' list")
        try:
            return cls(words)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json_atomic(path, {"format": VOCAB_FORMAT, "size": len(self), "words": self._words}, indent=None)

    # -- lookups ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __hash__(self) -> int:
        return hash(tuple(self._words))

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"

    @property
    def words(self) -> list[str]:
        return list(self._words)

    def index(self, word: str) -> int:
        return self._index[word]

    def word(self, i: int) -> str:
        return self._words[i]

    @property
    def ixtoword(self) -> dict[int, str]:
        return dict(enumerate(self._words))

    @property
    def wordtoix(self) -> dict[str, int]:
        return dict(self._index)

    # -- encoding -----------------------------------------------------------------------------------------
    def encode_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids, dropping words that are not in the vocabulary (as the official code does)."""
        return [self._index[t] for t in tokens if t in self._index and t != END_TOKEN]

    def encode(self, text: str) -> list[int]:
        return self.encode_tokens(tokenize(text))

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for i in ids:
            i = int(i)
            if i == 0:
                continue
            words.append(self._words[i])
        return " ".join(words)

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` that are not in the vocabulary (in order, without repeats)."""
        out: dict[str, None] = {}
        for t in tokenize(text):
            if t not in self._index:
                out[t] = None
        return list(out)

    def encode_prompt(self, text: Any, max_words: int = 18, *, unknown: str = "drop") -> EncodedPrompt:
        """Encode a user prompt for inference.

        ``unknown='drop'`` drops unknown words with a :class:`VocabularyWarning` naming them;
        ``unknown='error'`` raises :class:`PromptError` naming them instead. A prompt that is not a string,
        is empty, or has no known word raises :class:`PromptError`. A prompt longer than ``max_words`` known
        words keeps the first ``max_words`` with a warning.
        """
        if unknown not in ("drop", "error"):
            raise ValueError(f"unknown-word policy must be 'drop' or 'error', got {unknown!r}")
        if not isinstance(text, str):
            raise PromptError(f"a prompt must be a string, got {type(text).__name__}: {text!r:.60}")
        tokens = tokenize(text)
        if not tokens:
            raise PromptError(f"the prompt {text!r:.80} contains no words")
        known = [t for t in tokens if t in self._index and t != END_TOKEN]
        missing = list(dict.fromkeys(t for t in tokens if t not in self._index or t == END_TOKEN))
        if missing and unknown == "error":
            raise PromptError(f"unknown words in prompt {text!r:.80}: {', '.join(missing)}")
        if not known:
            raise PromptError(
                f"no word of the prompt {text!r:.80} is in the model's vocabulary "
                f"(unknown: {', '.join(missing)})"
            )
        if missing:
            warnings.warn(
                f"dropped words not in the vocabulary: {', '.join(missing)} (prompt {text!r:.80})",
                VocabularyWarning,
                stacklevel=2,
            )
        truncated = len(known) > max_words
        if truncated:
            warnings.warn(
                f"prompt has {len(known)} known words; only the first {max_words} are used "
                f"(dropped: {' '.join(known[max_words:])})",
                VocabularyWarning,
                stacklevel=2,
            )
            known = known[:max_words]
        return EncodedPrompt(
            text=text, ids=[self._index[t] for t in known], words=known, unknown=missing, truncated=truncated
        )


def _official_ixtoword(obj: Any, source: str) -> dict[int, str]:
    """Pull ``ixtoword`` out of an official captions pickle ``[train, test, ixtoword, wordtoix]``."""
    if not isinstance(obj, (list, tuple)) or len(obj) < 4:
        raise ValueError(
            f"{source}: expected the official 4-list [train_captions, test_captions, ixtoword, wordtoix], "
            f"got {type(obj).__name__}" + (f" of length {len(obj)}" if isinstance(obj, (list, tuple)) else "")
        )
    ixtoword = obj[2]
    if not isinstance(ixtoword, dict):
        raise ValueError(f"{source}: element 2 (ixtoword) is a {type(ixtoword).__name__}, expected a dict")
    return {int(k): str(v) for k, v in ixtoword.items()}
