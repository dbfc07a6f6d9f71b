"""The dispatcher: one thread fans job events out into deliveries, one pump claims due deliveries
and a pool of `ATELIER_WEBHOOK_CONCURRENCY` threads sends them.

Everything it knows lives in Redis (services/common/webhooks/deliveries.py), so a dispatcher
restarted, or killed mid-send, resumes where the store says: fan-out from each job's cursor,
sending from the due set, where a delivery claimed by a dead dispatcher falls due again once
its lease (two timeouts and a second) runs out. Any number of dispatchers may run: each job's
events are scheduled once (the cursor is compared and set in the script that schedules them),
each due delivery is claimed by one dispatcher at a time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from services.common.settings import Settings
from services.common.store import JobStore
from services.common.webhooks import signing
from services.common.webhooks.config import Webhooks, file_of
from services.common.webhooks.deliveries import Delivery, WebhookStore
from services.webhooks import metrics, sender
from services.webhooks.fanout import FanOut

log = logging.getLogger(__name__)

REDIS_TROUBLE = (redis.ConnectionError, redis.TimeoutError)
PRUNE_EVERY_SECONDS = 60.0


def backoff(attempts: int, base: float, cap: float, rng: random.Random = random) -> float:  # type: ignore[assignment]
    """The wait after the `attempts`-th failed attempt: base x 2^(attempts-1), at most `cap`, times
    a random factor in [0.5, 1] so that endpoints coming back are not hit by every retry at once."""
    return min(cap, base * 2 ** (attempts - 1)) * rng.uniform(0.5, 1.0)


class Dispatcher:
    def __init__(self, settings: Settings, client: redis.Redis | None = None, *, poll_seconds: float = 0.2):
        self.settings = settings
        client = client or redis.Redis.from_url(settings.redis_url)
        self.jobs = JobStore(client, settings.key_prefix, settings.result_ttl_seconds)
        self.deliveries = WebhookStore(client, settings.key_prefix)
        self.webhooks = Webhooks(file_of(settings.webhooks_file, settings.api_keys_file))
        self.fanout = FanOut(self.deliveries, self.jobs, self.webhooks,
                             max_inline_image_bytes=settings.webhook_max_inline_image_bytes,
                             state_ttl_seconds=settings.result_ttl_seconds)
        self.poll_seconds = poll_seconds
        self.lease_seconds = 2 * settings.webhook_timeout_seconds + 1
        self.stopping = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self._freed = threading.Event()
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook-send")
        self._threads = [threading.Thread(target=self._fan_out_loop, name="webhook-fanout", daemon=True),
                         threading.Thread(target=self._pump_loop, name="webhook-pump", daemon=True)]

    def start(self) -> Dispatcher:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; attempts in flight finish (or time out) first."""
        self.stopping.set()
        for t in self._threads:
            t.join(timeout)
        self._pool.shutdown(wait=True)

    def _fan_out_loop(self) -> None:
        pruned = 0.0
        while not self.stopping.is_set():
            try:
                if self.fanout.step(block_ms=int(self.poll_seconds * 1000)) < 0:
                    self.stopping.wait(self.poll_seconds)
                if time.monotonic() - pruned > PRUNE_EVERY_SECONDS:
                    self.fanout.prune()
                    pruned = time.monotonic()
            except REDIS_TROUBLE as err:
                log.warning("webhook fan-out: Redis unavailable (%s); retrying", err)
                self.stopping.wait(1.0)
            except Exception:
                log.exception("webhook fan-out failed; retrying")
                self.stopping.wait(1.0)

    def _pump_loop(self) -> None:
        concurrency = self.settings.webhook_concurrency
        while not self.stopping.is_set():
            try:
                with self._lock:
                    free = concurrency - self._busy
                if free <= 0:
                    self._freed.wait(self.poll_seconds)
                    self._freed.clear()
                    continue
                batch = self.deliveries.claim(time.time(), self.lease_seconds, free)
                metrics.PENDING.set(self.deliveries.pending())
                if not batch:
                    self.stopping.wait(self.poll_seconds)
                    continue
                for delivery in batch:
                    with self._lock:
                        self._busy += 1
                    self._pool.submit(self._attempt, delivery)
            except REDIS_TROUBLE as err:
                log.warning("webhook sending: Redis unavailable (%s); retrying", err)
                self.stopping.wait(1.0)
            except Exception:
                log.exception("webhook sending failed; retrying")
                self.stopping.wait(1.0)

    def _attempt(self, delivery: Delivery) -> None:
        try:
            self.attempt(delivery)
        except Exception:  # noqa: BLE001 - its lease runs out and it is tried again
            log.exception("webhook delivery %s: attempt failed in the dispatcher", delivery.id)
        finally:
            with self._lock:
                self._busy -= 1
            self._freed.set()

    def attempt(self, delivery: Delivery) -> bool:
        """Send one delivery once and record the outcome; True if the endpoint accepted it."""
        s = self.settings
        secrets = [x.secret for x in self.webhooks.tenant(delivery.tenant).secrets]
        if secrets:
            payload = delivery.body.encode()
            started = time.monotonic()
            answer = sender.post(delivery.url, payload, signing.headers(secrets, delivery.msg_id, int(time.time()),
                                                                        payload), s.webhook_timeout_seconds)
            metrics.ATTEMPT_SECONDS.observe(time.monotonic() - started)
        else:
            answer = sender.Answer(False, "unsigned", f"tenant {delivery.tenant!r} has no webhook secret")
        if answer.ok:
            self.deliveries.delivered(delivery)
            metrics.DELIVERIES.labels(event=delivery.kind).inc()
            return True
        metrics.FAILURES.labels(reason=answer.reason).inc()
        now = time.time()
        retry_at = now + backoff(delivery.attempts + 1, s.webhook_retry_base_seconds, s.webhook_retry_max_seconds)
        made = self.deliveries.failed(delivery, answer.detail, retry_at, s.webhook_max_attempts, now)
        if made == 0:
            metrics.DEAD_LETTERS.inc()
            log.warning("webhook %s to %s is a dead letter after %d attempts: %s", delivery.msg_id, delivery.url,
                        s.webhook_max_attempts, answer.detail)
        return False
