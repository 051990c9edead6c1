"""whisperfast's tokenizer (whisperfast/tokenizer.py) is mlx-whisper's, id for id: the fast
engine decodes with it, the stock lane with mlx-whisper's own."""

import pytest
from mlx_whisper import tokenizer as stock

from whisperfast import tokenizer as ours

TEXTS = [" ", " -", " And so, my fellow Americans: ask not!", "你好，世界。", " naïve café — 1,234.5 ",
         "\u266a la la", " <|x|> <| not special", "it's we're they'll", "  spaced\tout\n"]
CASES = [(False, None, None), (True, "en", "transcribe"), (True, "zh", "translate"), (True, "german", None),
         (True, None, None)]


@pytest.mark.parametrize("multilingual,language,task", CASES)
def test_same_ids_as_mlx_whisper(multilingual, language, task):
    a = ours.get_tokenizer(multilingual, num_languages=99, language=language, task=task)
    b = stock.get_tokenizer(multilingual, num_languages=99, language=language, task=task)
    assert a.encoding is not b.encoding  # built here, not borrowed
    assert a.encoding.n_vocab == b.encoding.n_vocab and a.special_tokens == b.special_tokens
    assert (a.sot_sequence, a.language, a.task) == (b.sot_sequence, b.language, b.task)
    assert a.non_speech_tokens == b.non_speech_tokens
    for text in TEXTS:
        assert a.encode(text) == b.encode(text), text
        assert a.decode(a.encode(text)) == b.decode(b.encode(text))


def test_special_tokens_in_text_still_refused():
    a, b = ours.get_tokenizer(False), stock.get_tokenizer(False)
    for tok in (a, b):
        with pytest.raises(ValueError, match="special token"):
            tok.encode("hello <|endoftext|>")
    assert a.encode("<|endoftext|>", allowed_special="all") == b.encode("<|endoftext|>", allowed_special="all")


def test_unknown_language_refused_as_stock_refuses():
    with pytest.raises(ValueError, match="Unsupported language: klingon"):
        ours.get_tokenizer(True, language="klingon")


def _symbol_texts():
    import string

    marks = list(string.punctuation) + list("「」『』♩♪♫♬♭♮♯—…·€")
    texts = {a + b for a in marks for b in marks} | {a * 3 for a in marks}
    texts = texts | {" " + t for t in texts} | set(marks) | {" " + m for m in marks}
    return sorted(t for t in texts if "<|" not in t)  # "<|" goes through tiktoken's special-token check


def test_single_pieces_merge_as_core_bpe_does():
    """The table-and-merge path (no CoreBPE) gives tiktoken's ids on every symbol run it takes."""
    for multilingual in (False, True):
        a, b = ours.get_tokenizer(multilingual), stock.get_tokenizer(multilingual)
        texts = _symbol_texts()
        assert all(ours._one_piece(t) for t in texts)
        assert [a.encoding.encode(t) for t in texts] == [b.encoding.encode(t) for t in texts]


def test_core_bpe_built_only_for_text_that_needs_it():
    enc = ours.get_encoding.__wrapped__("gpt2")  # a fresh one, not the cached
    tok = stock.Tokenizer(encoding=enc, num_languages=99)
    tok.encode(" ")
    ids = tok.non_speech_tokens
    assert tok.decode(tok.encode(" And so")) == " And so"
    assert "_core_bpe" in enc.__dict__  # " And so" holds letters: CoreBPE's regex split
    fresh = ours.get_encoding.__wrapped__("gpt2")
    tok = stock.Tokenizer(encoding=fresh, num_languages=99)
    assert tok.encode(" ") == [220] and tok.non_speech_tokens == ids
    assert tok.decode([843, 523]) == stock.get_tokenizer(False).decode([843, 523])
    assert "_core_bpe" not in fresh.__dict__
