"""`atelier gateway add-key` / `revoke-key` as docs/DEPLOY.md writes them: without `--keys-file`
they use the file docker compose mounts into the gateway, so a key is revoked where it was added."""

import json

import pytest

from atelier_cli.main import main as cli_main


@pytest.fixture
def in_checkout(tmp_path, monkeypatch):
    """A compose checkout's working directory, with no keys settings in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ATELIER_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("ATELIER_KEYS_DIR", raising=False)
    return tmp_path


def _key_ids(path):
    return [e["id"] for e in json.loads(path.read_text())["keys"]]


def test_revoke_key_without_keys_file_uses_the_compose_keys_file(in_checkout, capsys):
    compose_file = in_checkout / "deploy/compose/keys/api_keys.json"
    assert cli_main(["gateway", "add-key", "--tenant", "studio-a", "--keys-file", str(compose_file)]) == 0
    assert cli_main(["gateway", "add-key", "--tenant", "studio-b"]) == 0  # the same file, by default
    first, second = _key_ids(compose_file)
    capsys.readouterr()
    assert cli_main(["gateway", "revoke-key", first]) == 0
    assert f"revoked key {first}" in capsys.readouterr().err
    assert _key_ids(compose_file) == [second]
    assert cli_main(["gateway", "revoke-key", first]) == 1
    assert "no key" in capsys.readouterr().err


def test_the_gateways_keys_setting_and_the_compose_folder_override_the_default(in_checkout, monkeypatch):
    keys_dir = in_checkout / "elsewhere"
    monkeypatch.setenv("ATELIER_KEYS_DIR", str(keys_dir))
    assert cli_main(["gateway", "add-key", "--tenant", "studio-a"]) == 0
    (kid,) = _key_ids(keys_dir / "api_keys.json")
    configured = in_checkout / "gateway_keys.json"
    monkeypatch.setenv("ATELIER_API_KEYS_FILE", str(configured))
    assert cli_main(["gateway", "add-key", "--tenant", "studio-b"]) == 0
    assert len(_key_ids(configured)) == 1
    assert cli_main(["gateway", "revoke-key", kid]) == 1  # not in the configured file
    monkeypatch.delenv("ATELIER_API_KEYS_FILE")
    assert cli_main(["gateway", "revoke-key", kid]) == 0
    assert _key_ids(keys_dir / "api_keys.json") == []
