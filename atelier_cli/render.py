"""Turns a job's event stream into a progress bar and files on disk (the CLI's view)."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2
from clients.requests import EXTENSIONS, sampler_name


class EventWriter:
    """Writes each artifact to `out/<job>-<index>.<ext>` (or where `path_for(artifact)` says) and
    the latest preview to `out/<job>-preview.jpg`; shows a live tqdm bar of sampler steps on stderr."""

    def __init__(self, out: Path, progress: bool = True, stream=None, path_for=None):
        self.out = Path(out)
        self.path_for = path_for
        self.stream = stream if stream is not None else sys.stderr
        self.progress = progress
        self.bar: tqdm | None = None
        self.written: list[Path] = []
        self.preview: Path | None = None
        self.finished: gen.Finished | None = None
        self.last_event_id = ""

    def _bar(self, total: int) -> tqdm | None:
        if self.progress and self.bar is None and total:
            self.bar = tqdm(total=total, unit="step", file=self.stream, dynamic_ncols=True, leave=True)
        return self.bar

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)

    def handle(self, event: gen.JobEvent) -> None:
        self.last_event_id = event.id
        kind = event.WhichOneof("event")
        prefix = event.job_id[:12]
        if kind == "queued":
            q = event.queued
            self._say(f"job {event.job_id} queued ({q.queue}, {q.position} ahead, "
                      f"eta {q.eta.ToNanoseconds() / 1e9:.1f} s)")
        elif kind == "started":
            self._say(f"started on {event.started.worker} ({event.started.execution_provider or 'unknown'})")
        elif kind == "progress":
            p = event.progress
            bar = self._bar(p.total_steps)
            if bar is not None:
                bar.total = p.total_steps
                bar.n = p.step
                bar.set_postfix(images=p.images_done, refresh=False)
                bar.refresh()
        elif kind == "preview":
            self.out.mkdir(parents=True, exist_ok=True)
            self.preview = self.out / f"{prefix}-preview.jpg"
            self.preview.write_bytes(event.preview.jpeg)
        elif kind == "artifact":
            a = event.artifact
            if self.path_for is not None:
                path = Path(self.path_for(a))
            else:
                path = self.out / f"{prefix}-{a.index}.{EXTENSIONS.get(a.mime_type, 'bin')}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(a.data)
            self.written.append(path)
            self._say(f"wrote {path} ({a.width}x{a.height}, seed {a.seed}, {_how(a.provenance)})")
        elif kind == "finished":
            self.finished = event.finished
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            f = event.finished
            state = types_pb2.JobState.Name(f.state).removeprefix("JOB_STATE_")
            detail = f": {f.error_message}" if f.error_message else ""
            self._say(f"{state.lower()} after {f.elapsed.ToNanoseconds() / 1e9:.2f} s, {f.images} image(s){detail}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @property
    def succeeded(self) -> bool:
        return self.finished is not None and self.finished.state == types_pb2.JOB_STATE_SUCCEEDED


def _how(prov) -> str:
    """The models and steps that made an artifact, in words."""
    parts = []
    if prov.model_name:
        sampler = sampler_name(prov.sampler) if prov.sampler else "default sampler"
        parts.append(f"{sampler}, {prov.steps} steps")
    if prov.upscale:
        how = "one pass" if prov.upscale_fast else f"{prov.upscale_steps} steps"
        parts.append(f"x{prov.upscale} by {prov.upscaler_name}/{prov.upscaler_version} in {how}")
    return ", then ".join(parts)
