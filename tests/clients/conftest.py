"""The clients run against the same in-process gateway and scripted worker as tests/gateway."""

from tests.gateway.conftest import keys, make_stack, model_repo, stack  # noqa: F401
