"""ListJobs through a real gateway on loopback and the real job store (docs/API.md, "Job history").

Jobs are made by Submit where the admission path matters, and by `JobStore.create` (the same
Lua script, under no quota) where a test needs many jobs or chosen creation times.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2
from atelier_cli.main import main as cli_main
from clients import AsyncClient, Client
from services.common.jobs import JobSpec, JobState, PromptSpec
from services.common.store import JobStore
from services.gateway import metrics
from services.gateway.history import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from tests.gateway.conftest import png_bytes
from tests.gateway.helpers import Stubs, auth, request, violations

BASE = 1_700_000_000.0  # creation times of made-up jobs: fixed, so the order is known


def spec(**fields) -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a red fox"),), seeds=(1,), **fields)


def make_jobs(store: JobStore, tenant: str, times: list[float], **fields) -> list[str]:
    return [store.create(tenant, spec(**fields), now=t)[0] for t in times]


def newest_first(store: JobStore, ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda i: (store.get(i).created_at, i), reverse=True)


def page_through(stubs: Stubs, key: str, page_size: int, **filters) -> list[str]:
    seen, token, pages = [], "", 0
    while True:
        reply = stubs.gen.ListJobs(gen.ListJobsRequest(page_size=page_size, page_token=token, **filters),
                                   metadata=auth(key))
        assert len(reply.jobs) <= page_size
        seen += [j.job_id for j in reply.jobs]
        pages += 1
        assert pages < 1000, "paging never ended"
        if not reply.next_page_token:
            return seen
        token = reply.next_page_token


@pytest.fixture
def stubs(stack):
    s = Stubs(stack.address)
    yield s
    s.close()


def test_pages_hold_every_job_once_newest_first(stack, stubs):
    times = [BASE + i * 0.5 for i in range(23)]
    ids = make_jobs(stack.store, "alice", times)
    for page_size in (1, 4, 7, 23, 50):
        assert page_through(stubs, stack.keys.alice, page_size) == list(reversed(ids))


def test_jobs_of_one_millisecond_page_by_id(stack, stubs):
    # 300 jobs created in one millisecond: more than the store reads in one round trip.
    ids = make_jobs(stack.store, "alice", [BASE] * 300) + make_jobs(stack.store, "alice", [BASE - 1, BASE + 1])
    listed = page_through(stubs, stack.keys.alice, 7)
    assert listed == newest_first(stack.store, ids)
    assert len(set(listed)) == 302


def test_submitted_jobs_are_listed_with_what_get_job_says(stack, stubs):
    handles = [stubs.gen.Submit(request(seeds=[i]), metadata=auth(stack.keys.alice)) for i in range(3)]
    img = stubs.gen.Submit(request(init_image=types_pb2.InputImage(data=png_bytes(64, 64)), strength=0.5),
                           metadata=auth(stack.keys.alice))
    reply = stubs.gen.ListJobs(gen.ListJobsRequest(), metadata=auth(stack.keys.alice))
    assert [j.job_id for j in reply.jobs] == [img.job_id] + [h.job_id for h in reversed(handles)]
    assert reply.next_page_token == ""
    for job in reply.jobs:
        assert job == stubs.gen.GetJob(gen.GetJobRequest(job_id=job.job_id), metadata=auth(stack.keys.alice))
    assert [j.kind for j in reply.jobs] == [types_pb2.JOB_KIND_IMG2IMG] + [types_pb2.JOB_KIND_TXT2IMG] * 3


def test_another_tenants_jobs_never_appear(stack, stubs):
    alice = make_jobs(stack.store, "alice", [BASE + i for i in range(0, 20, 2)])
    bob = make_jobs(stack.store, "bob", [BASE + i for i in range(1, 20, 2)])
    bob += [stubs.gen.Submit(request(), metadata=auth(stack.keys.bob)).job_id]
    assert set(page_through(stubs, stack.keys.alice, 3)) == set(alice)
    assert set(page_through(stubs, stack.keys.bob, 3)) == set(bob)
    for state in JobState.ALL:
        filtered = page_through(stubs, stack.keys.alice, 5, states=[types_pb2.JobState.Value("JOB_STATE_" + state)])
        assert set(filtered) <= set(alice)
    # Bob's page token is no good to Alice: it cannot move her into his history either way.
    first = stubs.gen.ListJobs(gen.ListJobsRequest(page_size=2), metadata=auth(stack.keys.bob))
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(gen.ListJobsRequest(page_size=2, page_token=first.next_page_token),
                           metadata=auth(stack.keys.alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(err.value)


def test_filters_by_state_kind_and_creation_time(stack, stubs):
    store = stack.store
    txt = make_jobs(store, "alice", [BASE + i for i in range(6)])
    img = make_jobs(store, "alice", [BASE + 10 + i for i in range(3)], init_image=png_bytes(8, 8), strength=0.5)
    inpaint = make_jobs(store, "alice", [BASE + 20], init_image=png_bytes(8, 8), mask=png_bytes(8, 8), strength=1.0)
    up = make_jobs(store, "alice", [BASE + 30, BASE + 31], upscale_image=png_bytes(8, 8))
    for job_id in txt[:2] + img[:1]:
        store.cancel(job_id, "alice")
    store.finish(txt[2], None, JobState.FAILED, "INTERNAL", "broken")
    key = stack.keys.alice

    cancelled = page_through(stubs, key, 2, states=[types_pb2.JOB_STATE_CANCELLED])
    assert cancelled == [img[0], txt[1], txt[0]]
    ended = page_through(stubs, key, 2, states=[types_pb2.JOB_STATE_CANCELLED, types_pb2.JOB_STATE_FAILED])
    assert ended == [img[0], txt[2], txt[1], txt[0]]
    assert page_through(stubs, key, 2, kinds=[types_pb2.JOB_KIND_IMG2IMG]) == list(reversed(img))
    assert page_through(stubs, key, 2, kinds=[types_pb2.JOB_KIND_INPAINT, types_pb2.JOB_KIND_UPSCALE]) == \
        list(reversed(inpaint + up))
    queued_txt = page_through(stubs, key, 1, states=[types_pb2.JOB_STATE_QUEUED], kinds=[types_pb2.JOB_KIND_TXT2IMG])
    assert queued_txt == list(reversed(txt[3:]))

    def at(seconds: float) -> Timestamp:
        t = Timestamp()
        t.FromNanoseconds(int(round(seconds * 1e9)))
        return t

    # created_after is inclusive, created_before exclusive, to the job's own creation time
    window = page_through(stubs, key, 2, created_after=at(BASE + 3), created_before=at(BASE + 20))
    assert window == list(reversed(txt[3:] + img))
    assert page_through(stubs, key, 3, created_after=at(BASE + 20.0005)) == list(reversed(up))
    assert page_through(stubs, key, 3, created_before=at(BASE + 0.0005)) == [txt[0]]
    late_cancelled = page_through(stubs, key, 3, created_after=at(BASE + 1), states=[types_pb2.JOB_STATE_CANCELLED])
    assert late_cancelled == [img[0], txt[1]]


def test_jobs_created_while_paging_do_not_repeat_or_skip_any(stack, stubs):
    store = stack.store
    ids = make_jobs(store, "alice", [BASE + i for i in range(12)])
    # jobs of the same millisecond as an existing one, and newer ones, arrive between pages
    seen, token = [], ""
    for round_ in range(100):
        reply = stubs.gen.ListJobs(gen.ListJobsRequest(page_size=3, page_token=token), metadata=auth(stack.keys.alice))
        seen += [j.job_id for j in reply.jobs]
        if not reply.next_page_token:
            break
        token = reply.next_page_token
        make_jobs(store, "alice", [time.time(), BASE + 20 + round_])
    assert seen == list(reversed(ids))


def test_expired_records_are_skipped_and_leave_the_history(stack, stubs, redis_client):
    short = JobStore(redis_client, stack.store.prefix, result_ttl_seconds=1)
    ids = make_jobs(stack.store, "alice", [BASE + i for i in range(8)])
    gone = ids[1:6:2]
    for job_id in gone:
        short.cancel(job_id, "alice")  # final: its keys expire after the (1 s) result TTL
    deadline = time.monotonic() + 10
    while any(redis_client.exists(stack.store.job_key(j)) for j in gone):
        assert time.monotonic() < deadline, "the records did not expire"
        time.sleep(0.05)
    kept = [j for j in ids if j not in gone]
    assert page_through(stubs, stack.keys.alice, 2) == list(reversed(kept))
    history = {m.decode() for m in redis_client.zrange(stack.store.history_key("alice"), 0, -1)}
    assert history == set(kept)  # the page removed the expired entries it met


def test_admission_trims_expired_entries_from_the_old_end(stack, redis_client):
    ids = make_jobs(stack.store, "alice", [BASE + i for i in range(4)])
    redis_client.delete(*[stack.store.job_key(j) for j in ids[:3]])  # as if their TTL ran out
    newer = make_jobs(stack.store, "alice", [BASE + 10])
    history = [m.decode() for m in redis_client.zrange(stack.store.history_key("alice"), 0, -1)]
    assert history == [ids[3]] + newer


def test_page_sizes_follow_aip_158(stack, stubs):
    ids = make_jobs(stack.store, "alice", [BASE + i for i in range(DEFAULT_PAGE_SIZE + 5)])
    reply = stubs.gen.ListJobs(gen.ListJobsRequest(page_size=0), metadata=auth(stack.keys.alice))
    assert len(reply.jobs) == DEFAULT_PAGE_SIZE and reply.next_page_token
    reply = stubs.gen.ListJobs(gen.ListJobsRequest(page_size=MAX_PAGE_SIZE * 10), metadata=auth(stack.keys.alice))
    assert [j.job_id for j in reply.jobs] == list(reversed(ids)) and not reply.next_page_token
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(gen.ListJobsRequest(page_size=-1), metadata=auth(stack.keys.alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must not be negative" in violations(err.value)["page_size"]


@pytest.mark.parametrize("token", ["garbage", "MTo5OTk6YWJjOjAwMDA", "x" * 300, "%%%"])
def test_a_token_the_gateway_did_not_issue_is_invalid_argument(stack, stubs, token):
    make_jobs(stack.store, "alice", [BASE])
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(gen.ListJobsRequest(page_token=token), metadata=auth(stack.keys.alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(err.value)) == {"page_token"}


def test_a_token_is_bound_to_its_filters(stack, stubs):
    make_jobs(stack.store, "alice", [BASE + i for i in range(5)])
    first = stubs.gen.ListJobs(gen.ListJobsRequest(page_size=2, states=[types_pb2.JOB_STATE_QUEUED]),
                               metadata=auth(stack.keys.alice))
    assert first.next_page_token
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(gen.ListJobsRequest(page_size=2, page_token=first.next_page_token),
                           metadata=auth(stack.keys.alice))
    assert "same states, kinds and creation bounds" in violations(err.value)["page_token"]
    edited = first.next_page_token[:-2] + ("AA" if not first.next_page_token.endswith("AA") else "BB")
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(gen.ListJobsRequest(page_size=2, page_token=edited, states=[types_pb2.JOB_STATE_QUEUED]),
                           metadata=auth(stack.keys.alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_filters_are_named(stack, stubs):
    after, before = gen.ListJobsRequest().created_after, gen.ListJobsRequest().created_before
    after.FromSeconds(2_000_000_000)
    before.FromSeconds(1_000_000_000)
    bad = gen.ListJobsRequest(states=[types_pb2.JOB_STATE_QUEUED, 0, 99], kinds=[0], page_size=-5,
                              created_after=after, created_before=before)
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(bad, metadata=auth(stack.keys.alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(err.value)) == {"states[1]", "states[2]", "kinds[0]", "page_size", "created_before"}


def test_needs_an_api_key_and_is_counted(stack, stubs):
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.ListJobs(gen.ListJobsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    def calls() -> float:
        return sum(s.value for m in metrics.RPCS.collect() for s in m.samples
                   if s.labels.get("method") == "Generation/ListJobs" and s.labels.get("code") == "OK"
                   and s.name.endswith("_total"))

    before = calls()
    stubs.gen.ListJobs(gen.ListJobsRequest(), metadata=auth(stack.keys.alice))
    assert calls() == before + 1


def test_sdk_iterates_over_pages(stack):
    ids = make_jobs(stack.store, "alice", [BASE + i for i in range(11)])
    make_jobs(stack.store, "alice", [BASE + 20], upscale_image=png_bytes(8, 8))
    with Client(stack.address, stack.keys.alice, timeout=20) as client:
        assert [j.job_id for j in client.list_jobs(page_size=3, kinds=["txt2img"])] == list(reversed(ids))
        assert [j.job_id for j in client.list_jobs(page_size=4, limit=6, kinds=["txt2img"])] == \
            list(reversed(ids))[:6]
        assert [j.job_id for j in client.list_jobs(created_after=BASE + 9, created_before=BASE + 20)] == \
            [ids[10], ids[9]]
        with pytest.raises(ValueError, match="unknown job state 'done'"):
            list(client.list_jobs(states=["done"]))


def test_cli_prints_a_table(stack, capsys):
    ids = make_jobs(stack.store, "alice", [BASE + i for i in range(5)])
    stack.store.cancel(ids[1], "alice")
    up = make_jobs(stack.store, "alice", [time.time()], upscale_image=png_bytes(8, 8))
    base = ["--gateway", stack.address, "--api-key", stack.keys.alice, "--timeout", "20"]

    assert cli_main(["jobs", "list", "--limit", "3", *base]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["JOB", "STATE", "KIND", "MODEL", "IMAGES", "CREATED", "(UTC)", "FINISHED", "(UTC)"]
    assert [line.split()[0] for line in lines[1:]] == [up[0], ids[4], ids[3]]
    assert lines[1].split()[1:3] == ["queued", "upscale"]

    assert cli_main(["jobs", "list", "--state", "cancelled", *base]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [[ids[1], "cancelled", "txt2img"]]

    assert cli_main(["jobs", "list", "--since", "1h", "--kind", "upscale", *base]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == up

    assert cli_main(["jobs", "list", "--kind", "inpaint", *base]) == 0
    assert capsys.readouterr().out == "no jobs\n"

    assert cli_main(["jobs", "list", "--gateway", stack.address, "--api-key", stack.keys.bob]) == 0
    assert capsys.readouterr().out == "no jobs\n"


@pytest.mark.parametrize("argv, says", [
    (["--limit", "0"], "--limit: '0': expected a whole number of at least 1"),
    (["--since", "yesterday"], "--since: 'yesterday': expected an age"),
    (["--state", "done"], "--state: invalid choice: 'done'"),
])
def test_cli_names_a_bad_flag_without_a_traceback(argv, says, capsys):
    try:
        code = cli_main(["jobs", "list", *argv])
    except SystemExit as exit_:  # argparse's own way out
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_async_sdk_iterates_over_pages(stack):
    ids = make_jobs(stack.store, "alice", [BASE + i for i in range(7)])

    async def listed() -> list[str]:
        async with AsyncClient(stack.address, stack.keys.alice, timeout=20) as client:
            return [j.job_id async for j in client.list_jobs(page_size=2, limit=5, states=["queued"])]

    assert asyncio.run(asyncio.wait_for(listed(), 30)) == list(reversed(ids))[:5]


def _history_section() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text()
    return text.split("### Job history\n", 1)[1].split("\n## ", 1)[0]


def test_the_api_docs_examples_run(stack, capsys):
    """docs/API.md, "Job history": its Python block and its command, as written, against a gateway."""
    ids = make_jobs(stack.store, "alice", [time.time() - 60 * i for i in range(3)])
    stack.store.finish(ids[0], None, JobState.FAILED, "INTERNAL", "broken")
    stack.store.finish(ids[2], None, JobState.FAILED, "INTERNAL", "broken")
    python, command = re.findall(r"```(python|sh)\n(.*?)```", _history_section(), re.S)[:2]
    assert python[0] == "python" and command[0] == "sh"
    code = python[1].replace('"127.0.0.1:50051"', repr(stack.address))
    exec(compile(code, "docs/API.md", "exec"), {"api_key": stack.keys.alice})  # noqa: S102 - our own docs
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [ids[0], ids[2]]

    argv = shlex.split(command[1].strip())
    assert argv[0] == "atelier"
    assert cli_main([*argv[1:], "--gateway", stack.address, "--api-key", stack.keys.alice]) == 0
    assert [line.split()[:3] for line in capsys.readouterr().out.splitlines()[1:]] == \
        [[ids[0], "failed", "txt2img"], [ids[2], "failed", "txt2img"]]
    stack.store.cancel(ids[1], "alice")
    assert cli_main(["jobs", "list", "--state", "cancelled", "--state", "failed", "--kind", "txt2img", "--since",
                     "1h", "--gateway", stack.address, "--api-key", stack.keys.alice]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ids
