"""Tokenizer facts checked against OpenAI's published ids and the layout of the shipped vocabulary file."""

import gzip

import pytest
import torch

import clip
from clip.tokenizer import VOCAB_FILE, decode, tokenize

BOT, EOT = 49406, 49407


def word_final_id(char: str) -> int:
    # Vocabulary layout: ids 0..255 are the printable byte characters in code-point order starting at "!"
    # (ASCII "!".."~" are ids 0..93), ids 256..511 the same characters marked word-final.
    return 256 + ord(char) - ord("!")


def whole_word_id(word: str) -> int:
    # Merged symbols take ids from 512 in merge-file order (line 0 of the file is a header).
    with gzip.open(VOCAB_FILE) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = ["".join(line.split()) for line in lines[1:48895]]
    return 512 + merges.index(word + "</w>")


def row(text: str, **kwargs) -> list[int]:
    ids = tokenize(text, **kwargs)[0].tolist()
    return ids[: ids.index(EOT) + 1]


def test_openai_reference_ids():
    assert row("a photo of a cat.") == [49406, 320, 1125, 539, 320, 2368, 269, 49407]


def test_single_characters_follow_the_byte_table():
    assert row("a") == [BOT, word_final_id("a"), EOT]
    assert row("!") == [BOT, 256, EOT]
    assert row("x") == [BOT, 343, EOT]


def test_digits_are_split_one_by_one():
    assert row("2024") == [BOT, *(word_final_id(c) for c in "2024"), EOT]


def test_common_words_are_single_merged_symbols():
    assert whole_word_id("cat") == 2368  # agrees with OpenAI's reference ids
    assert row("dog") == [BOT, whole_word_id("dog"), EOT]
    assert row("a photo of a cat")[2:4] == [whole_word_id("photo"), whole_word_id("of")]


def test_layout_padding_and_dtype():
    tokens = tokenize(["a photo of a cat.", "dog"])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    assert tokens[0, 0] == BOT and tokens[1, 0] == BOT
    assert tokens[0, 7] == EOT and tokens[1, 2] == EOT
    assert torch.all(tokens[0, 8:] == 0) and torch.all(tokens[1, 3:] == 0)
    assert tokenize("dog", context_length=5).tolist() == [[BOT, whole_word_id("dog"), EOT, 0, 0]]


def test_cleaning_lowercases_collapses_whitespace_and_unescapes_html():
    assert torch.equal(tokenize("  A   PHOTO\tof a\nCat. "), tokenize("a photo of a cat."))
    assert torch.equal(tokenize("salt &amp; pepper"), tokenize("salt & pepper"))


def test_template_is_concatenation_of_its_parts():
    word = "pomeranian"
    word_ids = row(word)[1:-1]
    assert len(word_ids) > 1
    expected = [BOT, *row("a photo of a")[1:-1], *word_ids, *row(".")[1:-1], EOT]
    assert row(f"a photo of a {word}.") == expected


def test_too_long_text_names_the_text():
    text = "cat " * 80
    with pytest.raises(RuntimeError, match="cat cat cat.*too long for context length 77"):
        tokenize(["dog", text])


def test_truncate_keeps_prefix_and_ends_with_eot():
    text = "one two three " * 30
    full = tokenize(text, context_length=200)[0]
    assert full[76] != EOT
    cut = tokenize(text, truncate=True)[0]
    assert cut.shape == (77,)
    assert torch.equal(cut[:76], full[:76])
    assert cut[76] == EOT


def test_decode_round_trip():
    assert decode(tokenize("A photo of a Cat.")[0]) == "a photo of a cat ."
    assert decode(tokenize("naïve café 東京")[0]) == "naïve café 東京"


def test_package_level_tokenize():
    from clip import clip as clip_api

    assert torch.equal(clip.tokenize("a cat"), clip_api.tokenize("a cat"))
