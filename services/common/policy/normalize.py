"""A prompt as the prompt check reads it: the tricks that hide a word from a plain match undone.

Unicode NFKC (full-width and styled letters), zero-width and control characters removed,
accents stripped, homoglyphs (Cyrillic and Greek letters that look Latin) folded, case folded,
leetspeak folded inside words that mix letters with digits or symbols ("n4k3d", "$ex"), letters
spaced or dotted apart joined ("g u n", "g.u.n"), and runs of one repeated letter shortened
("nuuude": in `text`; the term match tries both, "kkk" being a term). The semantic match reads
`text`, the term match `tokens`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Look-alikes that NFKC keeps apart from Latin letters (Unicode confusables, the common ones).
HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h",
    "ӏ": "l", "ԛ": "q", "ԝ": "w", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "ѵ": "v", "ı": "i", "ł": "l",
    "ø": "o", "ð": "d", "þ": "p", "ß": "ss", "æ": "ae", "œ": "oe",
})
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                      "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l"})
_LEET_CHARS = "01345789@$!|+€£"
_INVISIBLE = {"Cc", "Cf", "Co", "Cn", "Cs"}
_WORD = re.compile(r"[a-z0-9@$!|+€£]+")
_REPEATS = re.compile(r"([a-z])\1{2,}")


@dataclass(frozen=True)
class Normalized:
    text: str  # words joined by single spaces: what the text encoder reads
    tokens: tuple[str, ...]


def _visible(text: str) -> str:
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _INVISIBLE:
            out.append(" " if ch in "\t\n\r\x0b\x0c" else "")
        elif cat == "Mn":  # combining accents, after NFKD below
            continue
        else:
            out.append(ch)
    return "".join(out)


def _fold_word(word: str) -> str:
    if any(c.isalpha() for c in word) and any(c in _LEET_CHARS for c in word):
        word = word.translate(LEET)
    return word


def _join_spelled_out(words: list[str]) -> list[str]:
    """Runs of three or more one-letter words become one word ("g u n" -> "gun")."""
    out: list[str] = []
    run: list[str] = []
    for w in [*words, ""]:
        if len(w) == 1 and w.isalpha():
            run.append(w)
            continue
        if len(run) >= 4 and run[0] in ("a", "i"):  # "a p o r n": the article, then the word
            out.append(run.pop(0))
        out.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if w:
            out.append(w)
    return out


def normalize(prompt: str) -> Normalized:
    text = unicodedata.normalize("NFKC", prompt)
    text = unicodedata.normalize("NFKD", _visible(text).casefold().translate(HOMOGLYPHS))
    text = _visible(text).translate(HOMOGLYPHS)
    words = [_fold_word(w) for w in _WORD.findall(text)]
    words = [w for w in (re.sub(r"[^a-z0-9]", "", w) for w in words) if w]
    tokens = tuple(_join_spelled_out(words))
    return Normalized(" ".join(_REPEATS.sub(r"\1", t) for t in tokens), tokens)
