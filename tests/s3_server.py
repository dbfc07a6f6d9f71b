"""A real S3-compatible server for the tests: moto's, in server mode (HTTP on loopback, in a
thread of the test process), with the credentials boto3 reads from the environment."""

from __future__ import annotations

import pytest

from services.common.embedded_redis import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "atelier-test", "AWS_SECRET_ACCESS_KEY": "atelier-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint(monkeypatch):
    """URL of a fresh S3-compatible server; boto3 clients (here and in child processes) find its
    credentials in the environment."""
    from moto.server import ThreadedMotoServer

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def bucket(endpoint: str, name: str):
    """A new bucket on the server at ``endpoint``; returns the boto3 client."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"])
    client.create_bucket(Bucket=name)
    return client
