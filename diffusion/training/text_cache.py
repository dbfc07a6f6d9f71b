"""Token states of every caption, computed once so training never runs the text encoder.

Row 0 is the empty caption "": the unconditional input for classifier-free guidance, which a
worker reproduces by encoding "" with the same tokenizer and encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_text_cache(captions: list[str], out: Path, max_length: int = 24) -> tuple[np.ndarray, np.ndarray, dict]:
    """Returns states float32 [U, L, 384], mask float32 [U, L], caption -> row."""
    unique = [""] + sorted(set(captions) - {""})
    out = Path(out)
    if out.exists():
        with np.load(out, allow_pickle=False) as z:
            if [str(c) for c in z["captions"]] == unique and z["states"].shape[1] == max_length:
                return z["states"], z["mask"], {c: i for i, c in enumerate(unique)}
    from diffusion.nets import text

    states, mask = text.TextEncoder(max_length)(unique)
    np.savez(out, captions=np.asarray(unique, dtype=np.str_), states=states, mask=mask)
    return build_text_cache(captions, out, max_length)  # train from the file, as a resumed run does
