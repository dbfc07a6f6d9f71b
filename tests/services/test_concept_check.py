"""The output concept check through a real worker process (`atelier worker`, ONNX Runtime) serving
the SHIPPED models: atelier-emoji's newest version and the concept classifier atelier-concepts.

Two tenants send the same bulk job, a beer mug and a red apple. The family tenant's policy
drops alcohol: its beer mug comes back as an artifact with FinishReason FILTERED, the concept and
no image data, a policy event says why, and its apple arrives as usual; the job succeeds with
one image filtered. The studio tenant's policy (the default) blocks none of the classifier's
concepts: its job plans no check, and its beer mug, the very image the family tenant was
denied (same model, prompt and seed), arrives; the shipped classifier, run here, flags it as
alcohol, so the difference is the policy, not the picture. The plans are made by the gateway's
own planning (services/gateway/planning.py) against the repository's catalog.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repository.reader import ModelRepository
from services.common.events import EventKind
from services.common.jobs import FinishReason, JobSpec, JobState, PromptSpec
from services.common.plan import Stage
from services.common.policy.policies import ContentPolicy, default_policy
from services.common.queues import enqueue
from services.common.settings import Settings
from services.gateway.catalog import ModelCatalog
from services.gateway.planning import planned
from services.worker.concept_runtime import load_concept_classifier
from tests.services.test_worker_integration import sender as sender  # noqa: F401 - fixture
from tests.services.test_worker_integration import store as store  # noqa: F401 - fixture
from tests.services.test_worker_integration import wait_finished
from tests.services.test_worker_integration import workers as workers  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
CLASSIFIER = "atelier-concepts"
pytestmark = [pytest.mark.slow, pytest.mark.redis,
              pytest.mark.skipif(not ModelRepository(MODELS).versions(CLASSIFIER),
                                 reason="no shipped concept classifier in models/")]

# A beer mug the shipped model draws at its defaults and the shipped classifier flags as alcohol
# (checked below on the image the studio tenant receives), and an apple it does not flag: captions
# of the data set, and the seed `atelier eval concepts` drew the mug with.
BEER = PromptSpec("beer mug, beer", "", "fluent-flat")
APPLE = PromptSpec("red apple, apple", "", "fluent-flat")
SEED = 1000
FAMILY = ContentPolicy.of("family", {"alcohol": "DROP", "weapons": "DROP"})
REAL_MODELS = dict(runtime_loader="services.worker.onnx_runtime:load_runtime", default_model="atelier-emoji",
                   model_repository=str(MODELS), task_soft_time_limit="60", task_time_limit="90",
                   visibility_timeout="120", progress_interval_ms="200")


def _submit(store, sender, tenant: str, policy: ContentPolicy) -> tuple[str, JobSpec]:  # noqa: F811
    catalog = ModelCatalog(MODELS, "atelier-emoji", 128)
    spec = JobSpec(prompts=(BEER, APPLE), seeds=(SEED,), output_format="png")
    spec = planned(spec, catalog.resolve("", ""), None, catalog.concepts(), policy)
    job_id, _ = store.create(tenant, spec)
    enqueue(sender, job_id, "interactive")
    return job_id, spec


def _by_kind(events, kind):
    return [e for e in events if e.kind == kind]


def test_an_image_one_tenants_policy_drops_is_delivered_to_a_tenant_whose_policy_allows_it(
        workers, store, sender):  # noqa: F811
    workers.start(concurrency=2, **REAL_MODELS)
    family_id, family = _submit(store, sender, "family-games", FAMILY)
    studio_id, studio = _submit(store, sender, "ad-studio", default_policy())
    assert Stage.CONCEPTS in family.plan.stages and family.plan.concept_check.drop == FAMILY.actions
    assert family.plan.concept_check.model == CLASSIFIER
    assert studio.plan.concept_check is None and Stage.CONCEPTS not in studio.plan.stages

    events = wait_finished(store, family_id, timeout=120)
    assert events[-1].data["state"] == JobState.SUCCEEDED, events[-1].data
    assert events[-1].data["images_filtered"] == 1
    beer, apple = sorted(_by_kind(events, EventKind.ARTIFACT), key=lambda e: e.data["index"])
    assert beer.data["finish_reason"] == FinishReason.FILTERED and beer.data["concept"] == "alcohol"
    assert beer.blob == b""  # withheld: no blank or blurred stand-in
    assert apple.data["finish_reason"] == FinishReason.COMPLETED and apple.data["concept"] == ""
    assert Image.open(io.BytesIO(apple.blob)).size == (32, 32)
    (decision,) = _by_kind(events, EventKind.POLICY)
    assert decision.data == {"check": "OUTPUT", "concept": "alcohol", "action": "DROP", "prompt_index": 0,
                             "indices": [0], "policy": "family"}

    events = wait_finished(store, studio_id, timeout=120)
    assert events[-1].data["state"] == JobState.SUCCEEDED and events[-1].data["images_filtered"] == 0
    arts = sorted(_by_kind(events, EventKind.ARTIFACT), key=lambda e: e.data["index"])
    assert [a.data["finish_reason"] for a in arts] == [FinishReason.COMPLETED] * 2
    assert not _by_kind(events, EventKind.POLICY)
    delivered = np.asarray(Image.open(io.BytesIO(arts[0].blob)).convert("RGBA"))[None]
    classifier = load_concept_classifier(Settings.from_env({}, model_repository=MODELS, execution_providers="cpu"),
                                         CLASSIFIER)
    p = dict(zip(classifier.info.concepts, classifier.probabilities(delivered)[0], strict=True))
    threshold = dict(zip(classifier.info.concepts, classifier.info.thresholds, strict=True))
    assert p["alcohol"] >= threshold["alcohol"], "the studio's beer mug is the image the family tenant was denied"
    apple_pixels = np.asarray(Image.open(io.BytesIO(arts[1].blob)).convert("RGBA"))[None]
    apple_p = dict(zip(classifier.info.concepts, classifier.probabilities(apple_pixels)[0], strict=True))
    assert all(apple_p[c] < threshold[c] for c in FAMILY.actions)
