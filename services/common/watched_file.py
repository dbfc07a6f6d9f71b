"""A file's parsed contents, read again whenever the file changes (its mtime or size): how the
gateway and the webhook dispatcher pick up edits of the keys and webhooks files while they run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class WatchedFile(Generic[T]):
    """`read(path)` of the file as it is now; `empty` while there is no file (or no path). An error
    of a type in `keep_on` (a half-written edit) keeps the contents read before and is logged."""

    def __init__(self, path: Path | None, read: Callable[[Path], T], empty: T,
                 keep_on: tuple[type[Exception], ...] = ()):
        self.path = Path(path) if path else None
        self._read, self._empty, self._keep_on = read, empty, keep_on
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._value = empty

    def current(self) -> T:
        if self.path is None:
            return self._empty
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._value = self._read(self.path) if stamp else self._empty
                except self._keep_on as err:
                    log.error("%s; still using what was read before", err)
                self._stamp = stamp
            return self._value
