"""The sizes a model version supports: stated by its manifest (or derived from its native size),
reported by ListModels, and enforced by Submit before anything is queued."""

from pathlib import Path

import grpc
import pytest
import redis as redis_lib

from atelier.v1 import models_pb2
from repository.manifest import LatentSpec, Manifest, SizeSpec
from services.common import readiness
from services.gateway.server import serve
from tests.gateway.conftest import RecordingQueue, gateway_settings, write_model
from tests.gateway.helpers import Stubs, auth, request, violations

pytestmark = [pytest.mark.redis]

SHIPPED_MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture
def gateways(redis_url, keys):
    """Starts real gateways over a repository (default model atelier-emoji); stops them at teardown."""
    started = []
    r = redis_lib.Redis.from_url(redis_url)

    def start(root: Path) -> Stubs:
        settings = gateway_settings(redis_url, keys, root, default_model="atelier-emoji", max_side=1024)
        readiness.report(r, settings.key_prefix, readiness.WorkerStatus("w@test", ("atelier-emoji/2",)), ttl=60)
        gateway = serve(settings, enqueue=RecordingQueue(), health_interval=0.2)
        started.append((gateway, Stubs(gateway.address)))
        return started[-1][1]

    yield start
    for gateway, stubs in started:
        stubs.close()
        gateway.stop(grace=0)
    r.close()


@pytest.fixture
def shipped(gateways) -> Stubs:
    """A gateway over the shipped repository: atelier-emoji states no sizes, is made at 32² and
    has a network that takes other shapes."""
    return gateways(SHIPPED_MODELS)


@pytest.fixture
def sized(gateways, tmp_path) -> Stubs:
    """A gateway over a fixed-shape model and one whose manifest states its sizes."""
    root = tmp_path / "models"
    fixed = root / "fixed-model" / "3"
    fixed.mkdir(parents=True)
    (fixed / "manifest.json").write_text(Manifest(name="fixed-model", version="3",
                                                  latent=LatentSpec(dynamic_size=False)).to_json())
    write_model(root, "big-model")
    stated = root / "big-model" / "1" / "manifest.json"
    manifest = Manifest.from_json(stated.read_text())
    stated.write_text(Manifest.from_dict({**manifest.to_dict(), "sizes": SizeSpec(128, True).to_dict()}).to_json())
    return gateways(root)


def _models(stubs, key):
    return {f"{m.name}/{m.version}": m for m in stubs.models.ListModels(models_pb2.ListModelsRequest(),
                                                                          metadata=auth(key)).models}


def test_list_models_reports_the_sizes_each_version_supports(shipped, sized, keys):
    emoji = _models(shipped, keys.alice)["atelier-emoji/2"]
    # No size section: its native 32² and, its network taking other shapes, the smaller multiples of 8.
    assert (emoji.width, emoji.height, emoji.other_sizes, emoji.min_size, emoji.max_size, emoji.size_step) == \
        (32, 32, True, 8, 32, 8)
    found = _models(sized, keys.alice)
    fixed = found["fixed-model/3"]
    assert (fixed.other_sizes, fixed.min_size, fixed.max_size) == (False, 32, 32)
    big = found["big-model/1"]
    assert (big.other_sizes, big.min_size, big.max_size) == (True, 4, 128)


@pytest.mark.parametrize("side", [128, 512])
def test_a_size_the_model_was_not_made_for_is_refused_naming_the_range(shipped, keys, side):
    with pytest.raises(grpc.RpcError) as err:
        shipped.gen.Submit(request(width=side, height=side), metadata=auth(keys.alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(err.value)
    assert set(found) == {"width", "height"}
    assert "sides of 8 to 32 pixels in steps of 8" in found["width"] and f"width {side}" in found["width"]


def test_supported_sizes_are_accepted_and_others_refused(shipped, sized, keys):
    assert shipped.gen.Submit(request(width=32, height=16), metadata=auth(keys.alice)).job_id
    big = sized.gen.Submit(request(model="big-model", width=128, height=64), metadata=auth(keys.alice))
    assert big.job_id
    with pytest.raises(grpc.RpcError) as err:
        sized.gen.Submit(request(model="big-model", width=136), metadata=auth(keys.alice))
    assert "4 to 128 pixels" in violations(err.value)["width"]
    with pytest.raises(grpc.RpcError) as err:
        sized.gen.Submit(request(model="fixed-model", width=16), metadata=auth(keys.alice))
    assert violations(err.value) == {"width": "width 16 is not supported: model fixed-model/3 makes only its "
                                              "native 32x32"}
