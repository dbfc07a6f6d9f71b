"""The term-list match: which concepts a normalised prompt names (services.common.policy.lexicon)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.common.policy.concepts import NAMES
from services.common.policy.lexicon import NEAR_MISSES, TERMS

# A word this long or longer also matches one edit away (a misspelling).
FUZZY_FROM = 6
_REPEATS = re.compile(r"([a-z])\1+")  # "nuuude" -> "nude"
_DOUBLES = re.compile(r"([a-z])\1{2,}")  # "shoooting" -> "shooting"
# Words never joined with a neighbour: "a pen is" is not a split word.
_FUNCTION_WORDS = frozenset("a an the is are was be on in at to of it as or by up and for with his her its".split())


def _singular(token: str) -> tuple[str, ...]:
    forms = [token]
    if token.endswith("es") and len(token) > 4:
        forms.append(token[:-2])
    if token.endswith("s") and len(token) > 3:
        forms.append(token[:-1])
    return tuple(forms)


def _one_edit(a: str, b: str) -> bool:
    """Whether a and b differ by one substitution, insertion, deletion or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


class TermMatcher:
    def __init__(self, terms: dict[str, Iterable[str]] = TERMS):
        self.words: dict[str, set[str]] = {}
        self.phrases: dict[tuple[str, ...], set[str]] = {}
        for concept, entries in terms.items():
            for entry in entries:
                parts = tuple(entry.split())
                if len(parts) == 1:
                    self.words.setdefault(parts[0], set()).add(concept)
                else:
                    self.phrases.setdefault(parts, set()).add(concept)
        # Every word of a term, a phrase's included: what a token is read as when it is one of them.
        self.vocabulary = set(self.words) | {w for p in self.phrases for w in p}
        self._by_length: dict[int, list[str]] = {}
        for w in sorted(self.vocabulary):
            if len(w) >= FUZZY_FROM:
                self._by_length.setdefault(len(w), []).append(w)
        self._longest_phrase = max((len(p) for p in self.phrases), default=1)

    def _exact(self, token: str) -> str | None:
        collapsed = _REPEATS.sub(r"\1", token)
        for form in (*_singular(token), collapsed, *_singular(_DOUBLES.sub(r"\1\1", token))):
            if form in self.vocabulary:
                return form
        return None

    def _canonical(self, token: str) -> str:
        """The term word the token is (as written, singular, with repeats cut, or one edit away)."""
        exact = self._exact(token)
        if exact is not None:
            return exact
        if token in NEAR_MISSES:
            return token
        if 4 <= len(token) < FUZZY_FROM:  # a short word: only two neighbouring letters swapped ("nzai")
            for i in range(len(token) - 1):
                swapped = token[:i] + token[i + 1] + token[i] + token[i + 2:]
                if swapped != token and swapped in self.vocabulary:
                    return swapped
        if len(token) < FUZZY_FROM - 1:
            return token
        for n in (len(token) - 1, len(token), len(token) + 1):
            for w in self._by_length.get(n, ()):
                if _one_edit(token, w):
                    return w
        return token

    def _merged(self, tokens: tuple[str, ...]) -> tuple[str, ...]:
        """Tokens with each pair that spells a term word when joined ("swas tika", "al qa eda") joined."""
        out: list[str] = []
        i = 0
        while i < len(tokens):
            if (i + 1 < len(tokens) and len(tokens[i] + tokens[i + 1]) >= 3
                    and tokens[i] not in _FUNCTION_WORDS and tokens[i + 1] not in _FUNCTION_WORDS):
                joined = tokens[i] + tokens[i + 1]
                word = self._exact(joined)
                if word is None and len(joined) >= FUZZY_FROM + 1:
                    fixed = self._canonical(joined)
                    word = fixed if fixed in self.vocabulary else None
                if word is not None and (self._exact(tokens[i]) is None or self._exact(tokens[i + 1]) is None):
                    out.append(word)
                    i += 2
                    continue
            out.append(tokens[i])
            i += 1
        return tuple(out)

    def _in(self, seq: tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for i, token in enumerate(seq):
            found |= self.words.get(token, set())
            for n in range(2, self._longest_phrase + 1):
                gram = seq[i:i + n]
                if len(gram) < n:
                    break
                found |= self.phrases.get(gram, set())
        return found

    def concepts(self, tokens: tuple[str, ...]) -> set[str]:
        """Every concept a term of which the tokens contain."""
        canonical = tuple(self._canonical(t) for t in tokens)
        merged = tuple(self._canonical(t) for t in self._merged(tokens))
        return self._in(canonical) | self._in(merged)

    def first(self, tokens: tuple[str, ...], among: Iterable[str]) -> str | None:
        """The first concept (vocabulary order) of `among` that the tokens name."""
        hit = self.concepts(tokens) & set(among)
        return next((c for c in NAMES if c in hit), None)
