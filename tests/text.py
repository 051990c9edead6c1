"""Transcript comparison: normalization and word (or character) error rate."""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    """Lower-case, punctuation dropped, whitespace collapsed."""
    kept = "".join(" " if unicodedata.category(c).startswith(("P", "S")) else c for c in text.lower())
    return " ".join(kept.split())


def units(text: str, language: str = "en") -> list[str]:
    """Words; characters for languages written without spaces."""
    norm = normalize(text)
    return [c for c in norm if not c.isspace()] if language in ("zh", "ja", "th", "yue") else norm.split()


def error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    """Levenshtein distance over units / reference length (WER, or CER for zh/ja/th)."""
    ref, hyp = units(reference, language), units(hypothesis, language)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(len(ref), 1)
