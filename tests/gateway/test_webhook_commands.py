"""`atelier webhooks` edits the webhooks file as the operator's commands say (docs/API.md,
"Webhooks"): endpoints, the first secret shown once, rotation with overlap, job URL prefixes."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.webhooks import config

ROOT = Path(__file__).resolve().parents[2]


def _atelier(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atelier_cli", "webhooks", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_commands_manage_endpoints_and_rotate_secrets(tmp_path):
    path = tmp_path / "webhooks.json"
    added = _atelier("add", "--tenant", "studio-a", "--url", "https://hooks.example/a", "--events",
                     "started,progress", "--progress-every", "2", "--file", str(path))
    assert added.returncode == 0, added.stderr
    endpoint_id = added.stdout.strip()
    first = added.stderr.split("(shown once): ")[1].split()[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "it holds secrets"
    tenant = config.read(path).tenant("studio-a")
    assert [s.secret for s in tenant.secrets] == [first]
    assert tenant.endpoints == (config.Endpoint(endpoint_id, "https://hooks.example/a", ("started", "progress"), 2),)

    second = _atelier("add", "--tenant", "studio-a", "--url", "https://hooks.example/b", "--file", str(path))
    assert "shown once" not in second.stderr, "a tenant's secret is shown only when it is made"
    rotated = _atelier("rotate-secret", "--tenant", "studio-a", "--file", str(path)).stdout.strip()
    assert [s.secret for s in config.read(path).tenant("studio-a").secrets] == [rotated, first]
    assert _atelier("retire-secrets", "--tenant", "studio-a", "--file", str(path)).returncode == 0
    assert [s.secret for s in config.read(path).tenant("studio-a").secrets] == [rotated]

    assert _atelier("allow-job-urls", "--tenant", "studio-a", "https://hooks.example/", "--file",
                    str(path)).returncode == 0
    assert config.read(path).tenant("studio-a").allows_job_url("https://hooks.example/jobs/1")
    listed = _atelier("list", "--file", str(path)).stdout
    assert endpoint_id in listed and rotated not in listed and first not in listed, "list shows no secret"
    assert _atelier("remove", endpoint_id, "--file", str(path)).returncode == 0
    assert _atelier("remove", endpoint_id, "--file", str(path)).returncode == 1
    assert [e.url for e in config.read(path).tenant("studio-a").endpoints] == ["https://hooks.example/b"]


def test_bad_values_are_refused_in_one_line(tmp_path):
    path = tmp_path / "webhooks.json"
    for args, says in [(("--url", "ftp://x/"), "http:// or https://"),
                       (("--url", "https://x/", "--events", "queued"), "events are started"),
                       (("--url", "https://x/", "--progress-every", "0"), "progress_interval_seconds")]:
        done = _atelier("add", "--tenant", "t", *args, "--file", str(path))
        assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr
    assert not path.exists(), "nothing written for a refused edit"
    path.write_text('{"tenants": {"t": {"endpoints": [{"id": "e", "url": "https://x/"}]}}}')
    with pytest.raises(config.WebhookConfigError, match="no secret to sign with"):
        config.read(path)


def test_services_follow_edits_of_the_file_and_keep_the_last_good_one(tmp_path):
    path = tmp_path / "webhooks.json"
    hooks = config.Webhooks(path)
    assert hooks.tenant("studio-a").endpoints == ()
    first, _ = config.add_endpoint(path, "studio-a", "https://hooks.example/a")
    assert hooks.tenant("studio-a").endpoints == (first,)
    path.write_text('{"tenants": {"studio-a": {"endpoints": [')  # an edit caught half-written
    assert hooks.tenant("studio-a").endpoints == (first,)
    path.unlink()
    second, _ = config.add_endpoint(path, "studio-a", "https://hooks.example/b")
    assert hooks.tenant("studio-a").endpoints == (second,)
    path.unlink()
    path.mkdir()  # a file that cannot be read is one more bad edit, not an error of every call
    assert hooks.tenant("studio-a").endpoints == (second,)
