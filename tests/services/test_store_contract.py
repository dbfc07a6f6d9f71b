"""The job store's smaller promises on a real Redis (services/common/store/): an expiry's time
and reason, the outbox's clock, a tenant's jobs in flight, following a log from "0" or until
it has been quiet, a quota refusal's text, a history page's budget."""

from __future__ import annotations

import pytest

from services.common.jobs import JobSpec, JobState, PromptSpec
from services.common.store import JobStore, QuotaExceeded
from services.common.store.history import HistoryFilter, Position, created_ms

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
