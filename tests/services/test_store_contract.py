"""The job store's smaller promises on a real Redis (services/common/store/): an expiry's time
and reason, the outbox's clock, a tenant's jobs in flight, following a log from "0" or until
it has been quiet, a quota refusal's text, a history page's budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.common.events import Artifact, Progress
from services.common.jobs import FinishReason, JobSpec, JobState, Priority, PromptSpec
from services.common.plan import JobKind
from services.common.shards import ShardInfo
from services.common.store import Admitted, DuplicateJob, JobNotFound, JobStore, Quota, QuotaExceeded
from services.common.store.history import HistoryFilter, Position, created_ms
from services.common.webhooks.deliveries import WebhookStore, job_record
from tests.services import toy_runtime

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="sc:", result_ttl_seconds=60)


SPEC = JobSpec(prompts=(PromptSpec("a red apple"),), seeds=(1,), steps=4, sampler="euler")
T0 = 1_800_000_000.0


def test_an_expired_job_says_its_deadline_passed_at_the_time_given(store):
    job_id, _ = store.create("acme", SPEC, now=T0)
    assert store.expire(job_id, now=T0 + 42.5)
    record = store.get(job_id)
    assert (record.state, record.error_message, record.finished_at) == (JobState.EXPIRED, "deadline passed",
                                                                       T0 + 42.5)
    assert store.read_events(job_id)[-1].data["elapsed_seconds"] == 42.5
    assert not store.expire(job_id, now=T0 + 50)  # final already


def test_the_outbox_is_read_and_claimed_by_the_clock_given(store):
    job_id, _ = store.create("acme", SPEC, now=T0)
    assert store.unsent(10, now=T0 + 5) == []
    assert store.unsent(10, now=T0 + 10.5) == [job_id]
    assert not store.claim_unsent(job_id, 10, now=T0 + 5)
    assert store.claim_unsent(job_id, 10, now=T0 + 11)
    assert store.unsent(10, now=T0 + 20) == []  # leased until one grace period after the claim
    assert store.unsent(10, now=T0 + 21.5) == [job_id]


def test_jobs_stored_just_now_are_not_yet_overdue_by_the_wall_clock(store):
    job_id, _ = store.create("acme", SPEC)
    assert store.unsent(3600) == [] and not store.claim_unsent(job_id, 3600)
    assert store.unsent(-3600) == [job_id] and store.claim_unsent(job_id, -3600)


def test_a_tenant_s_jobs_in_flight_are_its_queued_and_running_ones(store):
    jobs = [store.create("acme", SPEC)[0] for _ in range(3)]
    store.create("other", SPEC)
    store.begin_attempt(jobs[1], "w")
    assert store.count_in_flight("acme") == 3 and store.in_flight("acme") == set(jobs)
    store.cancel(jobs[0])
    store.finish(jobs[1], 1, JobState.SUCCEEDED)
    assert store.count_in_flight("acme") == 1 and store.in_flight("acme") == {jobs[2]}
    assert store.count_in_flight("nobody") == 0


def test_following_from_zero_starts_at_the_first_event_and_a_quiet_log_ends_the_follow(store):
    job_id, _ = store.create("acme", SPEC)
    assert [e.kind for e in store.follow_events(job_id, after="0", block_ms=10, timeout=0.05)] == ["queued"]
    assert list(store.follow_events(job_id, after=store.read_events(job_id)[0].id, block_ms=10, timeout=0.05)) == []


def test_a_quota_refusal_reads_as_its_limit_and_count():
    refused = QuotaExceeded("queue_full", 7)
    assert (str(refused), refused.limit, refused.counted) == ("queue_full: 7", "queue_full", 7)


def test_a_history_page_examines_at_most_its_budget_and_says_where_to_go_on(store):
    jobs = [store.create("acme", SPEC, now=T0 + i)[0] for i in range(20)]  # jobs[-1] is the newest
    none_match = HistoryFilter(states=frozenset({JobState.SUCCEEDED}))
    page = store.history("acme", 10, none_match, budget=5)
    assert page.records == [] and page.next == Position(created_ms(T0 + 15), jobs[15])
    page = store.history("acme", 10, none_match, after=page.next, budget=15)
    assert page.records == [] and page.next is None  # the budget ran out with the history
    every = store.history("acme", 20, budget=20)
    assert [r.job_id for r in every.records] == jobs[::-1] and every.next is None
    assert store.history("acme", 19, budget=20).next == Position(created_ms(T0 + 1), jobs[1])


def test_a_budget_counts_every_entry_across_round_trips(store):
    jobs = [store.create("acme", SPEC, now=T0 + i)[0] for i in range(25)]
    none_match = HistoryFilter(states=frozenset({JobState.SUCCEEDED}))
    page = store.history("acme", 10, none_match, budget=20)  # 16 entries a round trip, then 4
    assert page.records == [] and page.next == Position(created_ms(T0 + 5), jobs[5])


def test_a_history_longer_than_one_read_lists_every_job_once_across_a_millisecond_on_the_edge(store):
    # 300 jobs, one a millisecond, and four more in the millisecond where the first 256-entry
    # read of the newest ends: every one comes once, newest first, ties by id.
    stamps = [T0 + i / 1000 for i in range(300)] + [T0 + 44 / 1000] * 4
    made = [(created_ms(t), store.create("acme", SPEC, now=t)[0]) for t in stamps]
    page = store.history("acme", 400)
    assert [r.job_id for r in page.records] == [j for _, j in sorted(made, reverse=True)]
    assert page.next is None


def test_a_job_created_with_no_counts_says_zero_steps_and_no_jobs_ahead(store):
    job_id, created = store.create("acme", SPEC, now=T0)
    queued = store.read_events(job_id)[0]
    assert created and store.get(job_id).steps_total == 0
    assert (queued.kind, queued.data["position"], queued.data["eta_seconds"]) == ("queued", 0, 0.0)


def test_a_worker_s_writes_carry_the_time_and_provider_given(store):
    job_id, _ = store.create("acme", SPEC, now=T0)
    attempt = store.begin_attempt(job_id, "w", now=T0 + 1)
    store.append_event(job_id, attempt, Progress(step=1, total_steps=4), now=T0 + 2)
    store.add_artifact(job_id, attempt, Artifact(index=0, mime_type="image/png"), b"png", now=T0 + 3)
    started, progress, artifact = store.read_events(job_id)[1:]
    assert (started.time, progress.time, artifact.time) == (T0 + 1, T0 + 2, T0 + 3)
    assert started.data["execution_provider"] == "" and store.get(job_id).started_at == T0 + 1


def test_a_finished_job_counts_the_images_the_content_policy_withheld(store):
    job_id, _ = store.create("acme", SPEC.with_(seeds=(1, 2, 3)))
    attempt = store.begin_attempt(job_id, "w")
    reasons = [FinishReason.FILTERED, FinishReason.COMPLETED, FinishReason.PROMPT_FILTERED]
    for index, reason in enumerate(reasons):
        store.add_artifact(job_id, attempt, Artifact(index=index, finish_reason=reason), b"" if index != 1 else b"png")
    assert store.finish(job_id, attempt, JobState.SUCCEEDED)
    finished = store.read_events(job_id)[-1]
    assert (finished.data["images"], finished.data["images_filtered"]) == (3, 2)


def test_a_finished_job_s_images_and_shards_expire_a_result_ttl_after_its_end(redis_client, store):
    # The worker wrote them under its own TTL; whoever ends the job (here a gateway keeping
    # results longer) gives every key of the job the same life from the end on, so no image
    # or shard record of a long job is gone while its record is still there.
    job_id, _ = store.create("acme", SPEC)
    attempt = store.begin_attempt(job_id, "w")
    store.add_artifact(job_id, attempt, Artifact(index=0), b"png")
    assert store.add_shard(job_id, attempt, ShardInfo(0, "shard-000000.tar", 1, 3, "0" * 64, attempt))
    keeper = JobStore(redis_client, key_prefix="sc:", result_ttl_seconds=100_000)
    assert keeper.cancel(job_id) == (JobState.CANCELLED, True)
    ttls = {key: redis_client.ttl(key) for key in (store.artifacts_key(job_id), store.shards_key(job_id),
                                                     store.job_key(job_id), store.events_key(job_id))}
    assert all(60 < ttl <= 100_000 for ttl in ttls.values()), ttls


def test_a_failure_s_message_is_kept_to_its_first_2000_characters(store):
    job_id, _ = store.create("acme", SPEC)
    attempt = store.begin_attempt(job_id, "w")
    message = "".join(chr(ord("a") + i % 26) for i in range(3000))
    assert store.finish(job_id, attempt, JobState.FAILED, "INTERNAL", message)
    assert store.get(job_id).error_message == message[:2000]
    assert store.read_events(job_id)[-1].data["error_message"] == message[:2000]


def test_a_cancel_records_the_time_given_and_no_error(store):
    job_id, _ = store.create("acme", SPEC, now=T0)
    assert store.cancel(job_id, "acme", now=T0 + 7.25) == (JobState.CANCELLED, True)
    record, finished = store.get(job_id), store.read_events(job_id)[-1]
    assert (record.finished_at, record.error_code, record.error_message) == (T0 + 7.25, "", "")
    assert (finished.time, finished.data["error_message"], finished.data["elapsed_seconds"]) == (T0 + 7.25, "", 7.25)
    assert store.cancel(job_id, "acme") == (JobState.CANCELLED, False)


def test_a_started_or_cancelled_job_gives_its_queue_slot_back(store):
    # max_waiting=1: a second job is admitted only once the first has left the waiting set.
    limits = Quota(max_in_flight=10, max_waiting=1, per_minute=100, window=1, window_seconds=60, slots=1,
                   job_seconds=1.0)
    for priority in Priority.ALL:
        first = store.admit("acme", SPEC.with_(priority=priority), limits)
        with pytest.raises(QuotaExceeded):
            store.admit("acme", SPEC.with_(priority=priority), limits)
        store.begin_attempt(first.job_id, "w")
        second = store.admit("acme", SPEC.with_(priority=priority), limits)
        assert second.position == 0
        store.cancel(second.job_id)
        third = store.admit("acme", SPEC.with_(priority=priority), limits)
        assert third.position == 0
        store.cancel(third.job_id)  # a batch job counts the interactive queue's waiting jobs too


def test_a_log_read_takes_at_most_the_count_asked_for(store):
    job_id, _ = store.create("acme", SPEC)
    attempt = store.begin_attempt(job_id, "w")
    for step in range(3):
        store.append_event(job_id, attempt, Progress(step=step, total_steps=4))
    assert [e.kind for e in store.read_events(job_id, count=2)] == ["queued", "started"]
    after = store.read_events(job_id)[1].id
    assert [e.data["step"] for e in store.read_events(job_id, after, count=2)] == [0, 1]


def test_following_a_job_that_does_not_exist_names_it(store):
    with pytest.raises(JobNotFound) as refused:
        list(store.follow_events("no-such-job", block_ms=10, timeout=5))
    assert refused.value.args == ("no-such-job",)


LIMITS = Quota(max_in_flight=10, max_waiting=10, per_minute=100, window=1, window_seconds=60, slots=1, job_seconds=1.0)


def test_only_a_job_admitted_with_webhooks_is_followed_for_them(redis_client, store):
    hooks = WebhookStore(redis_client, prefix="sc:")
    plain = store.admit("acme", SPEC, LIMITS, now=T0)
    hooked = store.admit("acme", SPEC, LIMITS, now=T0 + 1, webhooks=job_record(None))
    assert hooks.following(10) == [hooked.job_id]
    assert redis_client.hget(store.job_key(hooked.job_id), "webhooks") == job_record(None).encode()
    assert not redis_client.hexists(store.job_key(plain.job_id), "webhooks")
    assert store.get(plain.job_id).steps_total == 0  # admitted with no step count


def test_a_broker_message_without_its_job_id_is_refused_saying_so(store):
    with pytest.raises(ValueError) as refused:
        store.admit("acme", SPEC, LIMITS, broker_message=("interactive", "{}"))
    assert str(refused.value) == "a broker message names its job: pass the job_id it was made for"
    assert store.count_in_flight("acme") == 0


def test_a_finished_job_carries_the_time_given_and_no_error_unless_it_failed(store):
    job_id, _ = store.create("acme", SPEC, now=T0)
    attempt = store.begin_attempt(job_id, "w", now=T0 + 1)
    with pytest.raises(ValueError) as refused:
        store.finish(job_id, attempt, JobState.RUNNING)
    assert str(refused.value) == "'RUNNING' is not a final state"
    assert store.finish(job_id, attempt, JobState.SUCCEEDED, now=T0 + 9.5)
    record, finished = store.get(job_id), store.read_events(job_id)[-1]
    assert (record.finished_at, record.error_code, record.error_message) == (T0 + 9.5, "", "")
    assert (finished.data["error_message"], finished.data["elapsed_seconds"]) == ("", 9.5)


def test_a_job_created_under_a_given_id_keeps_it_and_only_one_with_webhooks_is_followed(redis_client, store):
    hooks = WebhookStore(redis_client, prefix="sc:")
    assert store.create("acme", SPEC, job_id="plain-job", now=T0) == ("plain-job", True)
    assert store.create("acme", SPEC, job_id="hooked-job", now=T0 + 1, webhooks=job_record(None)) == ("hooked-job",
                                                                                                     True)
    assert store.get("plain-job").tenant == store.get("hooked-job").tenant == "acme"
    assert hooks.following(10) == ["hooked-job"]


def test_a_record_names_its_worker_and_one_stored_before_job_kinds_reads_its_plan_s(redis_client, store):
    planned_job, _ = store.create("acme", toy_runtime.planned(SPEC))
    bare_job, _ = store.create("acme", SPEC)
    assert store.get(planned_job).worker == ""
    store.begin_attempt(planned_job, "worker-7")
    assert store.get(planned_job).worker == "worker-7"
    for job_id in (planned_job, bare_job):  # as the release before job history stored them
        redis_client.hdel(store.job_key(job_id), "kind")
    assert (store.get(planned_job).kind, store.get(bare_job).kind) == (JobKind.TXT2IMG, "")


def test_with_no_live_worker_slot_the_eta_counts_one_slot(store):
    no_slots = replace(LIMITS, slots=0, job_seconds=4.0)
    first, second = (store.admit("acme", SPEC, no_slots) for _ in range(2))
    assert (first.position, first.eta_seconds, second.position, second.eta_seconds) == (0, 4.0, 1, 8.0)
    assert store.read_events(second.job_id)[0].data["eta_seconds"] == 8.0


def test_an_ordinary_job_has_no_shards_done_and_an_unknown_one_is_named_when_not_found(store):
    job_id, _ = store.create("acme", SPEC)
    assert store.get(job_id).shards_done == 0
    with pytest.raises(JobNotFound) as refused:
        store.get("no-such-job")
    assert refused.value.args == ("no-such-job",)


def test_a_tenant_s_rate_counter_outlives_its_window_by_one_window_at_most(redis_client, store):
    store.admit("acme", SPEC, LIMITS)
    assert 0 < redis_client.ttl(store.rate_key("acme", LIMITS.window)) <= 2 * LIMITS.window_seconds


def test_a_second_job_under_an_existing_id_is_refused_as_a_duplicate_and_writes_nothing(store):
    store.create("acme", SPEC, job_id="taken", now=T0)
    with pytest.raises(DuplicateJob) as refused:
        store.create("other", SPEC, job_id="taken", now=T0 + 1)
    assert refused.value.args == ("taken",)
    assert store.get("taken").tenant == "acme" and store.count_in_flight("other") == 0


def test_a_request_id_used_again_admits_nothing_and_names_the_job_with_no_place_in_the_queue(store):
    first = store.admit("acme", SPEC.with_(request_id="r-1"), LIMITS, now=T0)
    again = store.admit("acme", SPEC.with_(request_id="r-1"), LIMITS, now=T0 + 1)
    assert again == Admitted(first.job_id, False, 0, 0.0, False)
    # typed as the gateway's reply (protobuf) takes them: 0.0 or False would not do for 0
    assert [type(v) for v in (again.position, again.eta_seconds, again.sent)] == [int, float, bool]
    assert store.count_in_flight("acme") == 1
