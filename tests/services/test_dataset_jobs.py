"""Dataset jobs on the worker, in process against the real Redis: the shards, their samples and
index in a folder and in a real S3-compatible server (moto in server mode), the same images an
ordinary job makes, progress that counts shards, and the job store's fencing of shard records.
The layout is read back with the `webdataset` library itself. A worker process killed mid-job
is tests/chaos/test_dataset_worker_kill.py."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

from services.common import datasets as ds
from services.common.dataset_store import DatasetStores, FolderFiles
from services.common.datasets import DatasetRequest, parse_output
from services.common.events import EventKind
from services.common.jobs import JobSpec, JobState, PromptSpec
from services.common.settings import Settings
from services.common.shards import Sample, ShardInfo, read_shard, shard_info, tar_shard
from services.worker.executor import JobExecutor
from tests.s3_server import bucket, s3_endpoint  # noqa: F401 - the fixture
from tests.services import toy_runtime
from tests.services.test_pipeline import models, store  # noqa: F401 - fixtures

pytestmark = pytest.mark.redis

PROMPTS = (PromptSpec("a red apple", "blurry", ""), PromptSpec("a blue gem", "", ""))
STYLES = ("flat", "3d")
SEEDS = (5, 6, 7)  # 2 prompts x 2 styles x 3 seeds = 12 images


def picture(png: bytes) -> tuple[bytes, dict[str, str]]:
    """A PNG's pixels and text chunks (its provenance): an ordinary job's file also carries its
    content credentials (a C2PA chunk, unique to each signing), which a dataset's do not."""
    image = Image.open(io.BytesIO(png))
    return image.tobytes(), dict(image.text)


def dataset_spec(output: str, shard_size: int = 5, **changes) -> JobSpec:
    spec = JobSpec(prompts=PROMPTS, seeds=SEEDS, steps=4, priority="batch",
                   dataset=DatasetRequest(output, shard_size, STYLES))
    return spec.with_(**changes)


def run(store, models, spec, **settings) -> str:  # noqa: F811 - the fixtures
    job_id = store.create("acme", toy_runtime.planned(spec))[0]
    executor = JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0,
                                                            **settings), name="test-worker")
    assert executor.run(job_id) == JobState.SUCCEEDED, store.get(job_id).error_message
    return job_id


@pytest.mark.parametrize(("text", "bucket_name", "path"), [
    ("studio/icons", "", "studio/icons"), ("studio/icons/", "", "studio/icons"),
    ("s3://my-bucket/runs/1/", "my-bucket", "runs/1"),
])
def test_an_output_names_a_folder_under_the_dataset_directory_or_a_bucket_prefix(text, bucket_name, path):
    location = parse_output(text)
    assert (location.bucket, location.path) == (bucket_name, path)


@pytest.mark.parametrize(("text", "says"), [
    ("", "must name where"), ("/data/x", "is not relative"), ("~/x", "is not relative"), ("a/../../b", "'..'"),
    ("a//b", "empty"), ("gs://b/x", "'gs' is not a store"), ("s3://bucket", "names no key prefix"),
    ("s3://UPPER/x", "is not a bucket name"), ("a\nb", "control characters"), ("x" * 1025, "over the limit"),
])
def test_an_output_no_store_takes_is_refused_saying_why(text, says):
    with pytest.raises(ds.BadOutput, match=None) as err:
        parse_output(text)
    assert says in str(err.value)


def test_shards_cut_the_images_in_plan_order_and_the_last_shard_holds_the_rest():
    plan = ds.DatasetPlan("x", shard_size=5, images_total=12)
    assert plan.shards_total == 3
    assert [list(plan.shard_indices(s)) for s in range(3)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert ds.shard_pattern(3) == "shard-{000000..000002}.tar" and ds.shard_pattern(1) == "shard-000000.tar"


def test_a_shard_s_bytes_depend_only_on_its_samples_and_read_back_grouped_by_key():
    samples = [Sample(ds.sample_key(i), {"png": bytes([i]) * 10, "txt": b"caption", "json": b"{}"}) for i in range(3)]
    data = tar_shard(samples)
    assert data == tar_shard(samples)  # no times, owners or modes of its own
    assert list(read_shard(data)) == samples


def test_a_dataset_job_writes_its_images_in_shards_with_an_index_and_the_same_images_as_ordinary_jobs(
        store, models, tmp_path):  # noqa: F811
    from prometheus_client import REGISTRY

    def images_counted() -> float:
        return REGISTRY.get_sample_value("atelier_images_total", {"model": "toy"}) or 0.0

    counted = images_counted()
    job_id = run(store, models, dataset_spec("studio/run1"), dataset_dir=tmp_path)
    assert images_counted() - counted == 12
    folder = tmp_path / "studio" / "run1"
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "shard-000000.tar", "shard-000001.tar",
                                                          "shard-000002.tar"]
    index = json.loads((folder / "index.json").read_text())
    assert (index["layout"], index["images"], index["job_id"], index["urls"]) == (
        "webdataset", 12, job_id, "shard-{000000..000002}.tar")
    for entry in index["shards"]:
        data = (folder / entry["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"])
    assert [s["images"] for s in index["shards"]] == [5, 5, 2]
    assert index["plan"]["model"] == "toy" and "prompts" not in index["plan"]

    samples = [s for shard in sorted(folder.glob("*.tar")) for s in read_shard(shard.read_bytes())]
    assert [s.key for s in samples] == [f"{i:08d}" for i in range(12)]
    # The same prompt, style and seed as an ordinary PNG job: the same pixels and provenance.
    for i, sample in enumerate(samples):
        prompt, style, seed = PROMPTS[i // 6], STYLES[i // 3 % 2], SEEDS[i % 3]
        meta = json.loads(sample.members["json"])
        assert (meta["prompt"], meta["style"], meta["seed"], meta["index"]) == (prompt.prompt, style, seed, i)
        assert meta["provenance"]["negative_prompt"] == prompt.negative_prompt
        assert sample.members["txt"].decode() == prompt.prompt
        alone = JobSpec(prompts=(PromptSpec(prompt.prompt, prompt.negative_prompt, style),), seeds=(seed,), steps=4)
        ((_, blob),) = toy_runtime.made_alone(alone)
        assert picture(sample.members["png"]) == picture(blob), f"sample {i} differs from an ordinary job's image"
        assert b"caBX" not in sample.members["png"], "a shard's image carries content credentials"

    record = store.get(job_id)
    assert (record.images_done, record.shards_done, record.kind) == (12, 3, "dataset")
    events = store.read_events(job_id)
    assert not [e for e in events if e.kind == EventKind.ARTIFACT]
    shard_counts = [(e.data["shards_done"], e.data["shards_total"], e.data["images_done"])
                    for e in events if e.kind == EventKind.PROGRESS]
    assert {(1, 3, 5), (2, 3, 10), (3, 3, 12)} <= set(shard_counts) and shard_counts[0] == (0, 3, 0)
    assert events[-1].data["images"] == 12
    assert [i.attempt for i in store.shards(job_id).values()] == [1, 1, 1]


def test_the_shards_read_with_the_webdataset_library(store, models, tmp_path):  # noqa: F811
    wds = pytest.importorskip("webdataset")
    run(store, models, dataset_spec("lib", shard_size=4), dataset_dir=tmp_path)
    url = str(tmp_path / "lib" / json.loads((tmp_path / "lib" / "index.json").read_text())["urls"])
    samples = list(wds.WebDataset(url, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(12)]
    assert all(s["png"].startswith(b"\x89PNG") and json.loads(s["json"])["index"] == i for i, s in enumerate(samples))


def test_a_dataset_job_writes_to_an_s3_compatible_server(store, models, s3_endpoint, tmp_path):  # noqa: F811
    client = bucket(s3_endpoint, "studio-data")
    job_id = run(store, models, dataset_spec("s3://studio-data/icons/v1", shard_size=8),
                 dataset_s3_endpoint=s3_endpoint, dataset_dir=tmp_path)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="studio-data")["Contents"])
    assert keys == ["icons/v1/index.json", "icons/v1/shard-000000.tar", "icons/v1/shard-000001.tar"]
    files = DatasetStores(tmp_path, s3_endpoint).open("s3://studio-data/icons/v1")
    assert json.loads(files.get("index.json"))["job_id"] == job_id
    assert [len(list(read_shard(files.get(n)))) for n in ("shard-000000.tar", "shard-000001.tar")] == [8, 4]
    assert not list(tmp_path.iterdir()), "an s3:// dataset wrote into the dataset directory"


def test_a_shard_is_recorded_once_and_only_by_the_attempt_that_owns_the_job(store):  # noqa: F811
    job_id = store.create("acme", toy_runtime.planned(dataset_spec("x")))[0]
    first = store.begin_attempt(job_id, "w1")
    info = shard_info(0, b"tar bytes", 5, first)
    assert store.add_shard(job_id, first, info)
    assert not store.add_shard(job_id, first, info), "a shard was recorded twice"
    second = store.begin_attempt(job_id, "w2")  # the first worker was presumed lost
    assert not store.add_shard(job_id, first, shard_info(1, b"late", 5, first)), "a fenced-off attempt recorded"
    assert store.add_shard(job_id, second, shard_info(1, b"more", 5, second))
    assert store.shards(job_id) == {0: info, 1: shard_info(1, b"more", 5, second)}
    record = store.get(job_id)
    assert (record.images_done, record.shards_done) == (10, 2)


def test_a_folder_write_replaces_a_shard_whole(tmp_path):
    files = FolderFiles(tmp_path / "d")
    files.put("shard-000000.tar", b"first")
    files.put("shard-000000.tar", b"second")
    assert files.get("shard-000000.tar") == b"second" and files.names() == ["shard-000000.tar"]
    assert ShardInfo.from_json(shard_info(0, b"x", 1).to_json()) == shard_info(0, b"x", 1)


def test_chunks_in_flight_make_the_same_shards_as_one_chunk_at_a_time(store, models, tmp_path):  # noqa: F811
    digests = {}
    for in_flight in (1, 4):
        run(store, models, dataset_spec(f"f{in_flight}", shard_size=12), dataset_dir=tmp_path, max_batch=4,
            dataset_chunks_in_flight=in_flight)  # 2 images a chunk: 6 chunks a shard
        index = json.loads((tmp_path / f"f{in_flight}" / "index.json").read_text())
        digests[in_flight] = [s["sha256"] for s in index["shards"]]
    assert len(digests[1]) == 1 and digests[1] == digests[4]


def test_only_an_image_the_output_check_withheld_is_reported_as_an_artifact_of_a_dataset_job():
    from services.common import events as ev
    from services.worker.datasets import ShardProgress

    told = []

    class Reporter:
        def artifact(self, payload, blob):
            told.append(payload.index)

        def policy(self, payload):
            told.append(payload.concept)

    progress = ShardProgress(Reporter(), {}, 3)
    progress.artifact(ev.Artifact(index=4, finish_reason="FILTERED"), b"")
    progress.policy(ev.Policy(concept="weapons"))
    with pytest.raises(AssertionError):
        progress.artifact(ev.Artifact(index=5), b"png bytes")
    assert told == [4, "weapons"]


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m"])
def test_a_sample_s_provenance_sent_back_as_a_request_makes_the_same_image(store, models, tmp_path,  # noqa: F811
                                                                          sampler):
    from tests.services.test_provenance_replay import replay
    from tests.services.test_provenance_replay import run as run_alone

    run(store, models, dataset_spec("replay", sampler=sampler, guidance_scale=3.5), dataset_dir=tmp_path)
    samples = list(read_shard((tmp_path / "replay" / "shard-000001.tar").read_bytes()))
    meta = json.loads(samples[-1].members["json"])
    _, blob, _ = run_alone(replay(meta["provenance"]))
    pixels = Image.open(io.BytesIO(samples[-1].members["png"])).convert("RGBA")
    assert pixels.tobytes() == blob, "the replayed request made another image"
