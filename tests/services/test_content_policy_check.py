"""The prompt check's parts without a model: normalisation, term lists, policy documents, and the
keys file keeping tenants' policies when keys change."""

from __future__ import annotations

import json

import pytest

from services.common.policy.check import PromptCheck
from services.common.policy.concepts import DEFAULT_BLOCKED, NAMES
from services.common.policy.normalize import normalize
from services.common.policy.policies import ContentPolicy, PolicyError, default_policy, parse_rules, tenant_policy
from services.common.policy.terms import TermMatcher
from services.common.settings import Settings, SettingsError
from services.gateway.auth import KeyRing, add_key, read_keys_file, revoke_key

MATCHER = TermMatcher()


@pytest.mark.parametrize(("prompt", "tokens"), [
    ("Ｎａｋｅｄ", ("naked",)),                      # full-width (NFKC)
    ("nа\u200bked", ("naked",)),                   # a Cyrillic a and a zero-width space
    ("n4k3d w0man", ("naked", "woman")),           # leetspeak inside words
    ("3 swords", ("3", "swords")),                 # a number alone stays a number
    ("g u n on a table", ("gun", "on", "a", "table")),
    ("a p o r n cover", ("a", "porn", "cover")),   # the article is not part of the spelled word
    ("h-e-r-o-i-n", ("heroin",)),
    ("Café\tcrème", ("cafe", "creme")),
])
def test_normalisation_undoes_the_disguises(prompt, tokens):
    assert normalize(prompt).tokens == tokens


@pytest.mark.parametrize(("prompt", "concepts"), [
    ("swas tika flag", {"hate_symbols"}),
    ("swastica", {"hate_symbols"}),                 # one edit away
    ("a nzai officer", {"hate_symbols"}),           # two letters swapped in a short word
    ("kkk members", {"hate_symbols"}),              # a repeated letter that is the term
    ("a teen han ging himself", {"self_harm"}),     # a phrase with a split word
    ("shhooting up in an alley", {"hard_drug_use"}),
    ("frothy beer mugs", {"alcohol"}),
    ("a heroine with a sword", {"weapons"}),        # not heroin
    ("a pen is on the table", set()),               # function words are never joined
    ("a method for painting", set()),
    ("an executive chair", set()),
    ("a shooting star", set()),
])
def test_term_lists_match_disguised_words_and_leave_near_misses(prompt, concepts):
    assert MATCHER.concepts(normalize(prompt).tokens) == concepts


def test_the_check_refuses_only_what_the_policy_blocks_and_never_reads_allowed_concepts():
    check = PromptCheck()
    family = ContentPolicy.of("family", {"weapons": "REFUSE", "sexual_content": "REFUSE", "alcohol": "DROP"})
    verdicts = check.check_many(["an iron sword", "a n u d e elf", "a beer mug", "a red apple"], family)
    assert [v.concept if v else None for v in verdicts] == ["weapons", "sexual_content", None, None]
    assert check.check_many(["an iron sword"], default_policy()) == [None]


def test_policy_documents_change_the_default_and_bad_ones_are_named():
    default = default_policy()
    assert set(default.refused()) == set(DEFAULT_BLOCKED) and default.name == "default"
    kids = tenant_policy(default, "kids", {"block": {"weapons": "refuse", "gambling": "DROP"},
                                           "allow": ["violence_gore"]})
    assert kids.name == "kids" and kids.action("gambling") == "DROP" and kids.action("violence_gore") is None
    assert ContentPolicy.from_dict(kids.to_dict()) == kids
    with pytest.raises(PolicyError, match="unknown concept 'guns'"):
        tenant_policy(default, "t", {"block": {"guns": "REFUSE"}})
    with pytest.raises(PolicyError, match="action 'BAN'"):
        tenant_policy(default, "t", {"block": {"weapons": "ban"}})
    with pytest.raises(PolicyError, match="unknown keys: blocks"):
        tenant_policy(default, "t", {"blocks": {}})
    assert parse_rules("weapons, alcohol=drop") == {"weapons": "REFUSE", "alcohol": "DROP"}
    assert set(NAMES) >= set(DEFAULT_BLOCKED)


def test_a_bad_default_policy_setting_names_the_variable():
    with pytest.raises(SettingsError, match="ATELIER_CONTENT_POLICY: .*unknown concept 'nudity'"):
        Settings.from_env({"ATELIER_CONTENT_POLICY": "nudity"})


def test_adding_and_revoking_keys_keeps_the_tenants_policies(tmp_path):
    path = tmp_path / "keys.json"
    kid, _ = add_key(path, "kids")
    document = json.loads(path.read_text())
    document["policies"] = {"kids": {"block": {"weapons": "REFUSE"}}}
    path.write_text(json.dumps(document))
    add_key(path, "other")
    assert revoke_key(path, kid)
    assert read_keys_file(path)[1] == {"kids": {"block": {"weapons": "REFUSE"}}}
    assert KeyRing(path).policy_document("kids") == {"block": {"weapons": "REFUSE"}}
    assert KeyRing(path).policy_document("other") is None
