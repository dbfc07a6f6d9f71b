"""The on-disk dataset: one ``.npz`` of plain arrays, never pickled objects.

Arrays:
  images      uint8 [N, H, W, 4]  premultiplied RGBA
  captions    unicode [N]
  emoji_ids   unicode [N]         the same subject in every style shares one id
  style_ids   int64 [N]           index into ``styles`` (0 is reserved for "no style")
  category_ids int64 [N]          index into ``categories``
  split       uint8 [N]           0 = train, 1 = validation
  styles, categories  unicode     names
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NO_STYLE = "none"  # style id 0: the unconditional style used for classifier-free guidance
TRAIN, VALIDATION = 0, 1


def split_of(emoji_id: str, validation_fraction: float = 0.05) -> int:
    """Deterministic split from a hash of the subject id: every style of one emoji lands together,
    so validation measures generalisation to unseen subjects, not unseen renderings."""
    digest = hashlib.sha256(emoji_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return VALIDATION if u < validation_fraction else TRAIN


@dataclass
class ImageDataset:
    images: np.ndarray
    captions: np.ndarray
    emoji_ids: np.ndarray
    style_ids: np.ndarray
    category_ids: np.ndarray
    split: np.ndarray
    styles: list[str]
    categories: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, which: int) -> ImageDataset:
        keep = self.split == which
        return ImageDataset(self.images[keep], self.captions[keep], self.emoji_ids[keep],
                            self.style_ids[keep], self.category_ids[keep], self.split[keep],
                            list(self.styles), list(self.categories))


def save_dataset(ds: ImageDataset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        images=ds.images.astype(np.uint8),
        captions=np.asarray(ds.captions, dtype=np.str_),
        emoji_ids=np.asarray(ds.emoji_ids, dtype=np.str_),
        style_ids=ds.style_ids.astype(np.int64),
        category_ids=ds.category_ids.astype(np.int64),
        split=ds.split.astype(np.uint8),
        styles=np.asarray(ds.styles, dtype=np.str_),
        categories=np.asarray(ds.categories, dtype=np.str_),
    )
    return path


def load_dataset(path: str | Path) -> ImageDataset:
    with np.load(path, allow_pickle=False) as z:
        return ImageDataset(
            images=z["images"], captions=z["captions"], emoji_ids=z["emoji_ids"],
            style_ids=z["style_ids"], category_ids=z["category_ids"], split=z["split"],
            styles=[str(s) for s in z["styles"]], categories=[str(c) for c in z["categories"]],
        )
