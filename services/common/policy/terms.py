"""The term-list match: which concepts a normalised prompt names (services.common.policy.lexicon)."""

from __future__ import annotations

from collections.abc import Iterable

from services.common.policy.concepts import NAMES
from services.common.policy.lexicon import NEAR_MISSES, TERMS

# A word this long or longer also matches one edit away (a misspelling).
FUZZY_FROM = 6


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
        self._by_length: dict[int, list[str]] = {}
        for w in self.words:
            if len(w) >= FUZZY_FROM:
                self._by_length.setdefault(len(w), []).append(w)
        self._longest_phrase = max((len(p) for p in self.phrases), default=1)

    def _word(self, token: str, fuzzy: bool) -> set[str]:
        for form in _singular(token):
            if form in self.words:
                return self.words[form]
        if not fuzzy or len(token) < FUZZY_FROM - 1 or token in NEAR_MISSES:
            return set()
        found: set[str] = set()
        for n in (len(token) - 1, len(token), len(token) + 1):
            for w in self._by_length.get(n, ()):
                if _one_edit(token, w):
                    found |= self.words[w]
        return found

    def concepts(self, tokens: tuple[str, ...]) -> set[str]:
        """Every concept a term of which the tokens contain."""
        found: set[str] = set()
        for i, token in enumerate(tokens):
            found |= self._word(token, fuzzy=True)
            if i + 1 < len(tokens):  # a word split in two ("swas tika")
                joined = token + tokens[i + 1]
                if len(joined) >= FUZZY_FROM:
                    found |= self._word(joined, fuzzy=False)
            for n in range(2, self._longest_phrase + 1):
                gram = tokens[i:i + n]
                if len(gram) < n:
                    break
                for last in _singular(gram[-1]):
                    found |= self.phrases.get((*gram[:-1], last), set())
        return found

    def first(self, tokens: tuple[str, ...], among: Iterable[str]) -> str | None:
        """The first concept (vocabulary order) of `among` that the tokens name."""
        hit = self.concepts(tokens) & set(among)
        return next((c for c in NAMES if c in hit), None)
