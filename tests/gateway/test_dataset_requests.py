"""Dataset requests (GenerateRequest.dataset) at the real gateway: every rule names its field and
queues nothing; a good request is stored at batch priority with its plan's kind, shards and
prompts crossed with the styles, and GetJob and ListJobs report it as a DATASET job."""

from __future__ import annotations

import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2
from tests.gateway.conftest import STYLES
from tests.gateway.helpers import Stubs, auth, violations
from tests.gateway.test_upscale_requests import UPLOAD, img

pytestmark = pytest.mark.redis

PROMPTS = [gen.PromptVariant(prompt="a red apple"), gen.PromptVariant(prompt="a blue gem")]


def dataset(output: str = "studio/run1", shard_size: int = 0, styles=()) -> gen.DatasetSpec:
    return gen.DatasetSpec(output=output, shard_size=shard_size, styles=list(styles))


CASES = {
    "no output": (dict(dataset=dataset("")), "dataset.output"),
    "an absolute folder": (dict(dataset=dataset("/etc/atelier")), "dataset.output"),
    "a folder leaving the dataset directory": (dict(dataset=dataset("runs/../../x")), "dataset.output"),
    "a home folder": (dict(dataset=dataset("~/x")), "dataset.output"),
    "another scheme": (dict(dataset=dataset("gs://bucket/x")), "dataset.output"),
    "a bucket without a prefix": (dict(dataset=dataset("s3://bucket")), "dataset.output"),
    "a bad bucket name": (dict(dataset=dataset("s3://Bad_Bucket/x")), "dataset.output"),
    "shards over the limit": (dict(dataset=dataset(shard_size=10_001)), "dataset.shard_size"),
    "an unknown style": (dict(dataset=dataset(styles=["nope"])), "dataset.styles[0]"),
    "a style twice": (dict(dataset=dataset(styles=[STYLES[0], STYLES[0]])), "dataset.styles"),
    "a prompt's own style with styles": (dict(dataset=dataset(styles=[STYLES[0]]),
                                             prompts=[gen.PromptVariant(prompt="a", style=STYLES[1])]),
                                        "prompts[0].style"),
    "interactive priority": (dict(dataset=dataset(), priority=types_pb2.PRIORITY_INTERACTIVE), "priority"),
    "JPEG output": (dict(dataset=dataset(), output_format=types_pb2.OUTPUT_FORMAT_JPEG), "output_format"),
    "an init image": (dict(dataset=dataset(), init_image=img(UPLOAD), strength=0.5), "init_image"),
    "upscaling": (dict(dataset=dataset(), upscale=4), "upscale"),
    "previews": (dict(dataset=dataset(), preview_every_steps=2), "preview_every_steps"),
    "more images than a dataset may have": (dict(dataset=dataset(styles=STYLES[:2]), count=60), "prompts"),
    "more seeds than a dataset may have": (dict(dataset=dataset(), count=101), "count"),
}


@pytest.fixture
def dstack(make_stack):
    return make_stack(max_dataset_images=100, max_dataset_prompts=3)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_dataset_rule_names_its_field_and_queues_nothing(dstack, case):
    fields, field = CASES[case]
    fields = {"prompts": PROMPTS, **fields}
    stubs = Stubs(dstack.address)
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.Submit(gen.GenerateRequest(**fields), metadata=auth(dstack.keys.alice), timeout=10)
    stubs.close()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, err.value.details())
    found = violations(err.value)
    assert found.get(field), (case, found)
    assert dstack.queue.sent == []


def test_more_prompts_than_a_dataset_may_have_is_refused(dstack):
    stubs = Stubs(dstack.address)
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.Submit(gen.GenerateRequest(prompts=PROMPTS * 2, dataset=dataset()),
                         metadata=auth(dstack.keys.alice), timeout=10)
    stubs.close()
    assert violations(err.value)["prompts"] == "4 prompts is over the limit of 3"


def test_a_dataset_job_is_planned_in_shards_at_batch_priority_with_its_prompts_crossed_with_styles(dstack):
    stubs = Stubs(dstack.address)
    request = gen.GenerateRequest(prompts=PROMPTS, seeds=[1, 2, 3], steps=4,
                                  dataset=dataset("s3://studio-data/icons/v1/", shard_size=5, styles=STYLES[:2]))
    handle = stubs.gen.Submit(request, metadata=auth(dstack.keys.alice), timeout=10)
    job = stubs.gen.GetJob(gen.GetJobRequest(job_id=handle.job_id), metadata=auth(dstack.keys.alice), timeout=10)
    listed = stubs.gen.ListJobs(gen.ListJobsRequest(kinds=[types_pb2.JOB_KIND_DATASET]),
                                metadata=auth(dstack.keys.alice), timeout=10)
    stubs.close()
    plan = dstack.store.get(handle.job_id).spec.plan
    assert plan.kind == "dataset" and plan.stages[-2:] == ("encode", "archive")
    assert [(p.prompt, p.style) for p in plan.prompts] == [
        ("a red apple", STYLES[0]), ("a red apple", STYLES[1]), ("a blue gem", STYLES[0]), ("a blue gem", STYLES[1])]
    assert (plan.dataset.output, plan.dataset.shard_size, plan.dataset.shards_total) == ("s3://studio-data/icons/v1",
                                                                                          5, 3)
    assert (job.kind, job.images_total, job.shards_total, job.shards_done) == (types_pb2.JOB_KIND_DATASET, 12, 3, 0)
    assert job.dataset_output == "s3://studio-data/icons/v1" and job.priority == types_pb2.PRIORITY_BATCH
    assert dstack.queue.sent == [(handle.job_id, "batch")]
    assert [j.job_id for j in listed.jobs] == [handle.job_id]


def test_a_dataset_s_default_shard_size_and_count_of_seeds(dstack):
    stubs = Stubs(dstack.address)
    handle = stubs.gen.Submit(gen.GenerateRequest(prompt="a red apple", count=90, dataset=dataset()),
                              metadata=auth(dstack.keys.alice), timeout=10)
    stubs.close()
    plan = dstack.store.get(handle.job_id).spec.plan
    assert len(set(plan.seeds)) == 90 and (plan.dataset.shard_size, plan.dataset.shards_total) == (256, 1)
