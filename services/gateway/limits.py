"""What a request is checked against: the request limits of Settings, and how a broken rule is told."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import Settings

# (field path, what is wrong with it): one google.rpc.BadRequest field violation.
Violation = tuple[str, str]


@dataclass(frozen=True)
class Limits:
    """The request limits of Settings (only what validation reads)."""

    max_side: int = 1024
    max_steps: int = 150
    max_guidance_scale: float = 30.0
    max_prompt_chars: int = 2000
    max_images_per_job: int = 64
    max_bulk_prompts: int = 1000
    max_dataset_images: int = 100_000
    max_dataset_prompts: int = 20_000
    max_upload_bytes: int = 8 * 1024 * 1024
    max_upload_pixels: int = 4096 * 4096

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(**{name: getattr(s, name) for name in cls.__dataclass_fields__})
