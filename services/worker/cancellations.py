"""Hears about cancelled jobs the moment they are cancelled.

`JobStore.cancel` publishes the job id on a Redis channel; one listener thread per worker
keeps the ids it heard, so a job's sampler thread learns of its cancellation with a set
lookup at its next step instead of a Redis round trip per step. Pub/sub is best effort (a
message published while the listener reconnects is lost), so the reporter still asks Redis
about ownership every progress interval: a missed message delays a stop, never prevents it.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)

FORGET_AFTER_SECONDS = 3600.0  # a cancelled job's id is of no use once its task is long gone


class CancelListener:
    def __init__(self, client: redis.Redis, channel: str):
        self.client, self.channel = client, channel
        self._heard: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._heard

    def heard(self, job_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._heard[job_id] = now
            if len(self._heard) > 10_000:
                self._heard = {j: t for j, t in self._heard.items() if now - t < FORGET_AFTER_SECONDS}

    def start(self) -> CancelListener:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="atelier-cancel", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        return self

    def _run(self, ready: threading.Event) -> None:
        while not self._stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                pubsub.get_message(timeout=1.0)  # reads the confirmation: from here on nothing is missed
                ready.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message["type"] == "message":
                        self.heard(message["data"].decode())
            except redis.RedisError as err:
                log.warning("cancel listener lost Redis (%s); reconnecting", err)
                self._stop.wait(1.0)
            finally:
                pubsub.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2.0)
