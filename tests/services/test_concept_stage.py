"""The concept stage in the pipeline (services/worker/concept_check.py) with a real exported ONNX
classifier on the toy model's images: exactly the images at or over a dropped concept's threshold
are withheld (FILTERED, the concept, no data, a policy event each), the others are the images the
job makes without the check, a plan whose classifier is not the loaded one is refused, and a worker
loads the classifier a job's plan names from its model repository itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from prometheus_client import REGISTRY

from diffusion.nets.concept_net import ConceptNet, ConceptNetConfig
from diffusion.training.concepts import write_package
from export.pipeline import ExportOptions, export_model
from repository.reader import ModelRepository
from services.common.events import EventKind
from services.common.jobs import FinishReason, JobRecord, JobSpec, JobState, PromptSpec
from services.common.plan import Stage, concept_check_plan, resolve
from services.common.settings import Settings
from services.worker.concept_runtime import OnnxConceptRuntime
from services.worker.executor import JobExecutor
from services.worker.pipeline import ModelMismatch, checked_plan, generate
from tests.services import toy_runtime
from tests.services.test_pipeline import models, store  # noqa: F401 - fixtures

CONCEPTS = ("weapons", "alcohol")
SEEDS = (1, 2, 3, 4, 5, 6)


def _export(root, net: ConceptNet, version: str, thresholds: dict[str, float]) -> OnnxConceptRuntime:
    report = {"thresholds": thresholds, "options": {"max_false_flags": 0.002}, "seconds": 0.0, "concepts": {},
              "folds": 0, "test_flagged_any": {"images": 0, "of": 0}}
    package = write_package(root / f"package{version}", net, report, {}, [], "test")
    export_model(package, ExportOptions(name="concepts", version=version, out=root / "models"))
    return OnnxConceptRuntime(ModelRepository(root / "models").open("concepts", version),
                              Settings.from_env({}, execution_providers="cpu"))


class Collector(toy_runtime.ArtifactCollector):
    def __init__(self):
        super().__init__()
        self.policies: list[dict] = []

    def policy(self, payload):
        self.policies.append(dataclasses.asdict(payload))


def _spec() -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a blue gem", "", "flat"),), seeds=SEEDS, output_format="raw_rgba8",
                   sampler="euler", steps=4)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The folder of this module's classifier packages and their model repository (models/)."""
    return tmp_path_factory.mktemp("concept-stage")


@pytest.fixture(scope="module")
def setup(root):
    """(plain images by index, a classifier whose weapons threshold splits them, its plan)."""
    torch.manual_seed(0)
    net = ConceptNet(ConceptNetConfig(channels=(4, 8), concepts=CONCEPTS)).eval()
    plain = {d["index"]: np.frombuffer(blob, np.uint8).reshape(d["height"], d["width"], 4)
             for d, blob in toy_runtime.made_alone(_spec())}
    probe = _export(root, net, "1", dict.fromkeys(CONCEPTS, 0.5))
    p = probe.probabilities(np.stack([plain[i] for i in range(len(SEEDS))]))[:, 0]
    middle = float(np.sort(p)[len(p) // 2])  # half the images at or over it
    runtime = _export(root, net, "2", {"weapons": middle, "alcohol": 1 - 1e-6})
    info = runtime.info
    check = concept_check_plan(info.name, info.version, info.sha256, info.concepts, "family",
                               {"weapons": "DROP", "alcohol": "REFUSE", "gambling": "DROP"})
    return plain, runtime, check, set(np.flatnonzero(p >= middle).tolist())


def _run(spec: JobSpec, runtime, check, rows_per_chunk: int = 4) -> Collector:
    toy = toy_runtime.ToyRuntime()
    spec = spec.with_(model="toy", model_version="1")
    spec = spec.with_(plan=resolve(spec, toy.info, concept_check=check))
    reporter = Collector()
    generate(JobRecord("j", "family", spec), toy, lambda tiling, shape: toy.denoiser(tiling), reporter,
             rows_per_chunk=rows_per_chunk, concepts=runtime)
    return reporter


def test_the_plan_drops_only_what_the_classifier_knows_and_runs_the_stage_before_the_image_is_written(setup):
    _, _, check, _ = setup
    assert check.drop == {"alcohol": "REFUSE", "weapons": "DROP"}  # gambling: not a concept of this classifier
    spec = _spec().with_(model="toy", model_version="1")
    plan = resolve(spec, toy_runtime.ToyRuntime().info, concept_check=check)
    assert plan.stages[plan.stages.index(Stage.DECODE) + 1] == Stage.CONCEPTS
    assert plan.stages.index(Stage.CONCEPTS) < plan.stages.index(Stage.ENCODE)
    assert type(plan).from_dict(plan.to_dict()) == plan


def test_flagged_images_are_withheld_and_reported_and_the_others_are_unchanged(setup):
    plain, runtime, check, flagged = setup
    assert 0 < len(flagged) < len(SEEDS)
    labels = {"concept": "weapons", "action": "DROP", "check": "OUTPUT", "tenant": "family"}
    counted = REGISTRY.get_sample_value("atelier_policy_decisions_total", labels) or 0.0
    reporter = _run(_spec(), runtime, check)
    assert REGISTRY.get_sample_value("atelier_policy_decisions_total", labels) == counted + len(flagged)
    by_index = {d["index"]: (d, blob) for d, blob in reporter.artifacts}
    assert sorted(by_index) == list(range(len(SEEDS)))
    for index, (data, blob) in by_index.items():
        if index in flagged:
            assert (data["finish_reason"], data["concept"], blob) == (FinishReason.FILTERED, "weapons", b"")
            assert data["seed"] == SEEDS[index] and data["provenance"]["seed"] == SEEDS[index]
        else:
            assert (data["finish_reason"], data["concept"]) == (FinishReason.COMPLETED, "")
            assert np.array_equal(np.frombuffer(blob, np.uint8).reshape(plain[index].shape), plain[index])
    assert sorted(i for p in reporter.policies for i in p["indices"]) == sorted(flagged)
    assert {(p["check"], p["concept"], p["action"], p["policy"]) for p in reporter.policies} == {
        ("OUTPUT", "weapons", "DROP", "family")}


def test_a_plan_whose_classifier_is_not_loaded_or_is_another_is_refused(setup):
    _, runtime, check, _ = setup
    toy = toy_runtime.ToyRuntime()
    spec = _spec().with_(model="toy", model_version="1")
    job = JobRecord("j", "family", spec.with_(plan=resolve(spec, toy.info, concept_check=check)))
    with pytest.raises(ModelMismatch, match="not loaded"):
        checked_plan(job, toy, None, None)
    other = dataclasses.replace(check, sha256="0" * 64)
    job = JobRecord("j", "family", spec.with_(plan=resolve(spec, toy.info, concept_check=other)))
    with pytest.raises(ModelMismatch, match="planned for"):
        checked_plan(job, toy, None, runtime)


@pytest.mark.redis
def test_the_worker_loads_the_classifier_the_plan_names_and_withholds_the_flagged_images(setup, root, store,  # noqa: F811
                                                                                        models):  # noqa: F811
    # The executor, not the caller, opens the classifier: from the worker's model repository, by the plan's version.
    _, runtime, check, flagged = setup
    spec = _spec().with_(model="toy", model_version="1")
    spec = spec.with_(plan=resolve(spec, toy_runtime.ToyRuntime().info, concept_check=check))
    job_id = store.create("family", spec)[0]
    executor = JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0,
                                                            model_repository=root / "models"), name="test-worker")
    assert executor.run(job_id) == JobState.SUCCEEDED, store.get(job_id).error_message
    artifacts = [e.data for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT]
    assert {a["index"] for a in artifacts if a["finish_reason"] == FinishReason.FILTERED} == flagged
