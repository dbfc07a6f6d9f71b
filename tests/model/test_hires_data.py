"""The 128² set's source adapters (diffusion/data/hires.py) on local stand-ins: no downloads."""

from __future__ import annotations

import numpy as np
from PIL import Image

from diffusion.data.hires import _noto_square, twemoji_items

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36">'
       '<circle cx="18" cy="18" r="16" fill="#fc0"/></svg>')


def test_noto_bitmaps_lose_their_empty_side_columns_without_resampling():
    arr = np.zeros((128, 136, 4), np.uint8)
    arr[10:100, 4:132] = (200, 100, 50, 255)
    square = _noto_square(Image.fromarray(arr, "RGBA"))
    assert square.size == (128, 128)
    assert np.array_equal(np.asarray(square), arr[:, 4:132])
    arr[50, 1] = (1, 1, 1, 255)           # a glyph that uses the margin is kept whole (letterboxed later)
    assert _noto_square(Image.fromarray(arr, "RGBA")).size == (136, 128)


def test_twemoji_files_are_found_with_or_without_fe0f(tmp_path):
    (tmp_path / "1f600.svg").write_text(SVG)
    (tmp_path / "2764.svg").write_text(SVG)
    (tmp_path / "1f469-200d-2764-fe0f-200d-1f468.svg").write_text(SVG)
    metadata = [
        {"unified": "1F600", "name": "GRINNING FACE", "short_names": ["grinning"], "category": "Smileys & Emotion"},
        {"unified": "2764-FE0F", "name": "HEAVY BLACK HEART", "short_names": ["heart"],
         "category": "Smileys & Emotion"},
        {"unified": "1F469-200D-2764-FE0F-200D-1F468", "name": "COUPLE WITH HEART: WOMAN, MAN",
         "short_names": [], "category": "People & Body"},
        {"unified": "1F3FB", "name": "SKIN TONE", "short_names": [], "category": "Component"},
        {"unified": "1F601", "name": "MISSING", "short_names": [], "category": "Smileys & Emotion"},
    ]
    items = list(twemoji_items(tmp_path, metadata, size=32))
    assert [i.emoji_id for i in items] == ["1f600", "2764-fe0f", "1f469-200d-2764-fe0f-200d-1f468"]
    assert items[0].caption == "grinning face, grinning"
    image = items[0].load()
    assert image.size == (32, 32) and image.mode == "RGBA"
