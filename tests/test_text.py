"""Tokenizer, vocabulary, the 18-word rule and prompt encoding (t2igan.text.vocab)."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

from t2igan.text.vocab import (
    END_TOKEN,
    PromptError,
    Vocabulary,
    VocabularyWarning,
    select_words,
    tokenize,
)

# -- tokenizer ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A Small RED Bird", ["a", "small", "red", "bird"]),
        # punctuation splits tokens; apostrophes and hyphens are not word characters
        ("this bird's wings, black-and-white; beak: short!", ["this", "bird", "s", "wings", "black", "and", "white",
                                                             "beak", "short"]),
        # underscores and digits are word characters
        ("red_wing bird2 has 3 spots", ["red_wing", "bird2", "has", "3", "spots"]),
        ("__init__ x_1", ["__init__", "x_1"]),
        # non-ASCII characters are dropped inside a token
        ("a café bird", ["a", "caf", "bird"]),
        ("CAFÉ", ["caf"]),
        ("naïve bird", ["nave", "bird"]),
        ("café日本", ["caf"]),
        # a token made only of non-ASCII characters disappears
        ("über 日本 bird", ["ber", "bird"]),
        ("日本", []),
        # "\ufffd\ufffd" (mis-decoded bytes in the CUB captions) is a word break
        ("red\ufffd\ufffdbird", ["red", "bird"]),
        ("\ufffd\ufffd", []),
        ("a\ufffdb", ["a", "b"]),
        ("tab\tseparated\nnew line\r\n", ["tab", "separated", "new", "line"]),
        ("", []),
        ("  ...  !! ", []),
    ],
)
def test_tokenize(text, expected):
    assert tokenize(text) == expected


def test_tokenize_rejects_non_strings():
    with pytest.raises(TypeError, match="bytes"):
        tokenize(b"a bird")


# -- vocabulary ----------------------------------------------------------------------------------------------------


def test_vocabulary_index_zero_is_end():
    v = Vocabulary(["<end>", "bird", "red"])
    assert END_TOKEN == "<end>"
    assert v.word(0) == "<end>" and v.index("<end>") == 0
    assert v.index("bird") == 1 and v.index("red") == 2
    assert len(v) == 3
    assert v.ixtoword == {0: "<end>", 1: "bird", 2: "red"}
    assert v.wordtoix == {"<end>": 0, "bird": 1, "red": 2}
    assert "red" in v and "blue" not in v


@pytest.mark.parametrize("words", [[], ["bird", "<end>"], ["<end>", "bird", "bird"], ["<end>", ""], ["<end>", 3]])
def test_vocabulary_rejects_bad_word_lists(words):
    with pytest.raises(ValueError):
        Vocabulary(words)


def test_vocabulary_build_first_appearance_train_then_test():
    train = [["the", "red", "bird"], ["a", "bird", "with", "red", "wings"]]
    test = [["a", "blue", "bird"], ["the", "zebra"]]
    v = Vocabulary.build(train, test)
    assert v.words == ["<end>", "the", "red", "bird", "a", "with", "wings", "blue", "zebra"]
    # test captions first gives another order: the order of the arguments matters
    assert Vocabulary.build(test, train).words == ["<end>", "a", "blue", "bird", "the", "zebra", "red", "with",
                                                   "wings"]


def test_encode_drops_unknown_and_decode_skips_padding():
    v = Vocabulary(["<end>", "a", "red", "bird"])
    assert v.encode("A red, RED parrot-bird") == [1, 2, 2, 3]
    assert v.encode_tokens(["<end>", "bird", "zebra"]) == [3]
    assert v.decode([1, 2, 3, 0, 0]) == "a red bird"
    assert v.unknown_words("a green parrot and a green bird") == ["green", "parrot", "and"]


def test_vocab_json_round_trip(tmp_path):
    v = Vocabulary(["<end>", "a", "small", "red_wing", "bird2"])
    path = tmp_path / "sub" / "vocab.json"
    v.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["words"] == ["<end>", "a", "small", "red_wing", "bird2"]
    assert data["size"] == 5
    loaded = Vocabulary.load(path)
    assert loaded == v
    assert loaded.words == v.words
    assert hash(loaded) == hash(v)


def test_vocab_load_plain_json_list_and_bad_json(tmp_path):
    p = tmp_path / "v.json"
    p.write_text('["<end>", "x", "y"]', encoding="utf-8")
    assert Vocabulary.load(p).words == ["<end>", "x", "y"]
    p.write_text('{"nowords": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="words"):
        Vocabulary.load(p)
    p.write_text('{"words": ["x", "<end>"]}', encoding="utf-8")
    with pytest.raises(ValueError, match=str(p).replace("\\", "\\\\")):
        Vocabulary.load(p)


def _official_pickle(path, words, protocol=2):
    ixtoword = {i: w for i, w in enumerate(words)}
    wordtoix = {w: i for i, w in enumerate(words)}
    train = [[1, 2, 3], [3, 1]]
    test = [[2, 2]]
    with open(path, "wb") as f:
        pickle.dump([train, test, ixtoword, wordtoix], f, protocol=protocol)


def test_vocab_from_official_captions_pickle(tmp_path):
    words = ["<end>", "this", "bird", "has", "red_wing"]
    path = tmp_path / "captions.pickle"
    _official_pickle(path, words)
    assert path.read_bytes()[:2] == b"\x80\x02"  # protocol 2, as AttnGAN writes it
    v = Vocabulary.load(path)
    assert v == Vocabulary(words)
    assert v.index("red_wing") == 4
    # the same through .pkl and through from_captions_pickle
    pkl = tmp_path / "captions_DAMSM.pkl"
    pkl.write_bytes(path.read_bytes())
    assert Vocabulary.load(pkl) == Vocabulary(words)
    assert Vocabulary.from_captions_pickle(path) == Vocabulary(words)


def test_vocab_from_python2_captions_pickle_bytes_words(tmp_path):
    # a Python-2 pickle keeps words as byte strings; simulate with bytes pickled at protocol 2
    path = tmp_path / "captions.pickle"
    ixtoword = {0: b"<end>", 1: b"bird", 2: b"red"}
    wordtoix = {b"<end>": 0, b"bird": 1, b"red": 2}
    with open(path, "wb") as f:
        pickle.dump([[[1, 2]], [[2]], ixtoword, wordtoix], f, protocol=2)
    v = Vocabulary.load(path)
    assert v.words == ["<end>", "bird", "red"]
    assert all(type(w) is str for w in v.words)


def test_vocab_from_genuine_python2_opcodes(tmp_path):
    # what Python 2.7 writes for [[[1]], [[1]], {0: '<end>', 1: 'bird'}, {'<end>': 0, 'bird': 1}] (protocol 2):
    # its str objects are SHORT_BINSTRING opcodes
    data = (b"\x80\x02]q\x00(]q\x01]q\x02K\x01aa]q\x03]q\x04K\x01aa}q\x05(K\x00U\x05<end>q\x06K\x01U\x04birdq\x07u"
            b"}q\x08(h\x06K\x00h\x07K\x01ue.")
    path = tmp_path / "captions.pickle"
    path.write_bytes(data)
    v = Vocabulary.load(path)
    assert v.words == ["<end>", "bird"]
    assert all(type(w) is str for w in v.words)


def test_vocab_from_pickle_errors(tmp_path):
    path = tmp_path / "captions.pickle"
    with open(path, "wb") as f:
        pickle.dump({"not": "a list"}, f, protocol=2)
    with pytest.raises(ValueError, match="4-list"):
        Vocabulary.load(path)
    with open(path, "wb") as f:
        pickle.dump([[], [], {0: "<end>", 2: "gap"}, {}], f, protocol=2)
    with pytest.raises(ValueError, match="not contiguous"):
        Vocabulary.load(path)
    with open(path, "wb") as f:
        pickle.dump([[], [], {0: "bird", 1: "<end>"}, {}], f, protocol=2)
    with pytest.raises(ValueError, match="index 0"):
        Vocabulary.load(path)


# -- the 18-word rule ----------------------------------------------------------------------------------------------


def _is_ordered_subsequence(sub, seq):
    it = iter(seq)
    return all(any(x == y for y in it) for x in sub)


def test_select_words_long_caption_keeps_18_in_order():
    ids = list(range(100, 125))  # 25 distinct ids
    out = select_words(ids, 18, np.random.default_rng(0))
    assert len(out) == 18
    assert out == sorted(out) and len(set(out)) == 18  # positions kept in their original order
    assert set(out) <= set(ids)
    assert _is_ordered_subsequence(out, ids)


def test_select_words_subsequence_with_repeated_words():
    ids = [5, 7, 5, 9, 7, 5, 3, 3, 8, 5, 7, 9, 2, 2, 5, 7, 1, 4, 6, 5, 5, 7, 9, 3, 2]
    for seed in range(5):
        out = select_words(ids, 18, np.random.default_rng(seed))
        assert len(out) == 18
        assert _is_ordered_subsequence(out, ids)


def test_select_words_depends_on_rng():
    ids = list(range(25))
    same = [select_words(ids, 18, np.random.default_rng(7)) for _ in range(2)]
    assert same[0] == same[1]
    picks = {tuple(select_words(ids, 18, np.random.default_rng(seed))) for seed in range(6)}
    assert len(picks) > 1


@pytest.mark.parametrize("n", [0, 1, 5, 17, 18])
def test_select_words_short_caption_unchanged(n):
    ids = list(range(1, n + 1))
    assert select_words(ids, 18, np.random.default_rng(0)) == ids


def test_select_words_rejects_nonpositive_max():
    with pytest.raises(ValueError):
        select_words([1, 2, 3], 0)


# -- prompts -------------------------------------------------------------------------------------------------------


@pytest.fixture
def vocab():
    return Vocabulary(["<end>", "a", "small", "red", "bird", "with", "black", "wings", "this", "has"])


def test_encode_prompt_known_words_no_warning(vocab):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc = vocab.encode_prompt("A small red bird with black wings.")
    assert enc.ids == [1, 2, 3, 4, 5, 6, 7]
    assert enc.words == ["a", "small", "red", "bird", "with", "black", "wings"]
    assert enc.unknown == [] and enc.truncated is False


def test_encode_prompt_truncates_to_max_words_with_warning(vocab):
    with pytest.warns(VocabularyWarning, match="only the first 4"):
        enc = vocab.encode_prompt("this bird has a small red bird with black wings", max_words=4)
    assert enc.ids == [8, 4, 9, 1]
    assert enc.words == ["this", "bird", "has", "a"]
    assert enc.truncated is True


def test_encode_prompt_default_max_words_is_18(vocab):
    prompt = " ".join(["red"] * 20)
    with pytest.warns(VocabularyWarning, match="20 known words"):
        enc = vocab.encode_prompt(prompt)
    assert enc.ids == [3] * 18


def test_encode_prompt_drops_unknown_words_naming_them(vocab):
    with pytest.warns(VocabularyWarning) as record:
        enc = vocab.encode_prompt("a purple bird with golden wings")
    msg = " ".join(str(w.message) for w in record)
    assert "purple" in msg and "golden" in msg
    assert enc.ids == [1, 4, 5, 7]
    assert enc.unknown == ["purple", "golden"]


def test_encode_prompt_all_unknown_is_error_naming_words(vocab):
    with pytest.raises(PromptError, match="purple") as exc:
        vocab.encode_prompt("purple parrot")
    assert "parrot" in str(exc.value)


@pytest.mark.parametrize("prompt", ["", "   ", "?!. ,;", "\ufffd\ufffd", None, 42, b"a bird", ["a", "bird"]])
def test_encode_prompt_empty_or_not_text(vocab, prompt):
    with pytest.raises(PromptError):
        vocab.encode_prompt(prompt)


def test_prompt_error_is_value_error():
    assert issubclass(PromptError, ValueError)
    assert issubclass(VocabularyWarning, UserWarning)


def test_encode_prompt_unknown_error_policy(vocab):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PromptError, match="purple"):
            vocab.encode_prompt("a purple bird", unknown="error")
        # a prompt of known words passes under the strict policy
        assert vocab.encode_prompt("a red bird", unknown="error").ids == [1, 3, 4]
    with pytest.raises(ValueError, match="policy"):
        vocab.encode_prompt("a red bird", unknown="ignore")


def test_encode_prompt_end_token_is_not_a_word(vocab):
    # "<end>" typed by a user tokenizes to "end", which is unknown; it must never produce id 0
    with pytest.warns(VocabularyWarning, match="end"):
        enc = vocab.encode_prompt("a red <end> bird")
    assert 0 not in enc.ids
    assert enc.ids == [1, 3, 4]
