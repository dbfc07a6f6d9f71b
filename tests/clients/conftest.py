"""Two kinds of stack for the clients' tests.

- `stack` / `make_stack` (from tests/gateway/conftest.py): the real gateway in this process with
  a SCRIPTED stand-in for the worker, which returns a fixed 8x8 red PNG and no model runs. Fast;
  it tests the clients' handling of streams, errors and resumes, not the images.
- `real_stack` (tests/clients/real_stack.py): the real gateway, a real worker process and the
  shipped ONNX model; the clients' end-to-end tests check the images it draws.
"""

from tests.clients.real_stack import real_stack  # noqa: F401
from tests.gateway.conftest import keys, make_stack, model_repo, stack  # noqa: F401
