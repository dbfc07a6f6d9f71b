"""Only a well-formed key in the authorization header names a key id; what a new key and the
keys file hold (services/gateway/auth.py)."""

from __future__ import annotations

import base64
import calendar
import json
import re
import time

import pytest

from services.gateway.auth import (
    KeyFileError,
    KeyRing,
    add_key,
    bearer_token,
    key_id,
    new_key,
    read_keys,
    read_keys_file,
)


@pytest.mark.parametrize("key", ["atk__secret", "atk_id_", "atk_id", "xyz_id_secret", "atk", ""])
def test_a_malformed_key_has_no_key_id(key):
    assert key_id(key) is None


def test_a_well_formed_key_s_id_is_its_middle_part():
    assert key_id("atk_0a1b2c_se_cret") == "0a1b2c"


def test_only_the_authorization_header_carries_the_bearer_token():
    assert bearer_token([("x-forwarded-authorization", "Bearer abc")]) is None
    assert bearer_token([("x-trace", "bearer abc"), ("authorization", "Bearer def")]) == "def"


@pytest.mark.parametrize("tenant", ["", "t" * 129])
def test_a_key_needs_a_tenant_name_of_1_to_128_characters(tmp_path, tenant):
    with pytest.raises(ValueError) as refused:
        add_key(tmp_path / "keys.json", tenant)
    assert str(refused.value) == "a tenant name of 1 to 128 characters is needed"
    assert not (tmp_path / "keys.json").exists()


def test_a_tenant_name_of_128_characters_gets_a_key(tmp_path):
    _, key = add_key(tmp_path / "keys.json", "t" * 128)
    assert KeyRing(tmp_path / "keys.json").tenant(key) == "t" * 128


def test_a_new_key_has_a_48_bit_id_and_a_256_bit_secret():
    kid, key = new_key()
    prefix, middle, secret = key.split("_", 2)
    assert (prefix, middle) == ("atk", kid) and re.fullmatch("[0-9a-f]{12}", kid)
    assert len(secret) == 43 and len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_a_key_s_creation_time_is_utc_whatever_the_local_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "XYZ-5:45")  # 5 h 45 min east of UTC, a zone no hour rounding hides
    time.tzset()
    try:
        before = int(time.time())
        kid, _ = add_key(tmp_path / "keys.json", "studio")
        after = int(time.time())
    finally:
        monkeypatch.undo()
        time.tzset()
    created = read_keys(tmp_path / "keys.json")[kid].created
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created
    assert before <= calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) <= after


def test_the_first_key_makes_the_folders_of_its_keys_file(tmp_path):
    path = tmp_path / "etc" / "atelier" / "keys.json"
    _, key = add_key(path, "studio")
    assert KeyRing(path).tenant(key) == "studio"


def test_a_keys_file_of_policies_alone_holds_no_keys_and_keeps_them_when_a_key_is_added(tmp_path):
    path = tmp_path / "keys.json"
    policy = {"blocked": ["weapons"]}
    path.write_text(json.dumps({"policies": {"studio": policy}}))
    assert read_keys_file(path) == ({}, {"studio": policy})
    _, key = add_key(path, "studio")
    ring = KeyRing(path)
    assert ring.tenant(key) == "studio" and ring.policy_document("studio") == policy
    assert set(json.loads(path.read_text())) == {"keys", "policies"}


def test_a_gateway_without_a_keys_file_knows_no_key(tmp_path):
    _, key = add_key(tmp_path / "keys.json", "studio")
    for path in (None, ""):
        ring = KeyRing(path)
        assert ring.path is None and ring.tenant(key) is None and ring.policy_document("studio") is None


def test_a_keys_file_whose_policies_are_not_a_map_is_refused_naming_the_file_and_why(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [], "policies": ["family"]}))
    with pytest.raises(KeyFileError) as refused:
        read_keys_file(path)
    assert str(refused.value) == f"{path}: not an Atelier keys file ('policies' must map tenants to policies)"
