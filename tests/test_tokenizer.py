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
