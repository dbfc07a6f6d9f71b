"""Only a well-formed key in the authorization header names a key id (services/gateway/auth.py)."""

from __future__ import annotations

import pytest

from services.gateway.auth import bearer_token, key_id


@pytest.mark.parametrize("key", ["atk__secret", "atk_id_", "atk_id", "xyz_id_secret", "atk", ""])
def test_a_malformed_key_has_no_key_id(key):
    assert key_id(key) is None


def test_a_well_formed_key_s_id_is_its_middle_part():
    assert key_id("atk_0a1b2c_se_cret") == "0a1b2c"


def test_only_the_authorization_header_carries_the_bearer_token():
    assert bearer_token([("x-forwarded-authorization", "Bearer abc")]) is None
    assert bearer_token([("x-trace", "bearer abc"), ("authorization", "Bearer def")]) == "def"
