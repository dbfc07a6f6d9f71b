"""Atelier's Python client SDK (the `atelier` command line built on it is `atelier_cli/`).

    from clients import Client, AsyncClient, InvalidArgument, ResourceExhausted

Imports only the generated stubs (`atelier.v1`) and grpc, so a game tool or ad pipeline
installs it without any of the service's dependencies; it imports nothing of services,
diffusion, export, training or Celery (tests/test_layering.py). Names load on first use, so
the `atelier` command line does not pay for grpc when running other subcommands.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Client": "clients.client",
    "AsyncClient": "clients.aio",
    "build_request": "clients.requests",
    "AtelierError": "clients.errors",
    "FieldViolation": "clients.errors",
    "InvalidArgument": "clients.errors",
    "NotFound": "clients.errors",
    "ResourceExhausted": "clients.errors",
    "Unauthenticated": "clients.errors",
    "Unavailable": "clients.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clients' has no attribute {name!r}")
