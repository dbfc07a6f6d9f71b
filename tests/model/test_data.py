"""Dataset builders on the fixture: counts, RGBA, captions, styles, split determinism."""

from __future__ import annotations

import numpy as np
from PIL import Image

from diffusion.data.build import build_emoji, build_folder, write_dataset
from diffusion.data.dataset import TRAIN, VALIDATION, load_dataset, save_dataset, split_of
from diffusion.data.images import to_premultiplied, unpremultiply


def test_emoji_builder_counts_styles_captions(emoji_fixture):
    ds = build_emoji(emoji_fixture, size=32)
    assert ds.styles == ["none", "noto", "twemoji", "fluent-flat"]
    per_style = {s: int((ds.style_ids == i).sum()) for i, s in enumerate(ds.styles)}
    # 14 emoji in the fixture's emoji.json; 11 of them have a Fluent flat icon in the fixture
    assert per_style == {"none": 0, "noto": 14, "twemoji": 14, "fluent-flat": 11}
    assert ds.images.shape == (39, 32, 32, 4) and ds.images.dtype == np.uint8
    assert "grinning face, grinning" in {str(c) for c in ds.captions}
    assert all(str(c).strip() for c in ds.captions)
    cats = {ds.categories[c] for c in ds.category_ids}
    assert {"Smileys & Emotion", "Food & Drink", "Flags"} <= cats


def test_images_are_premultiplied_rgba_with_transparency(emoji_fixture):
    ds = build_emoji(emoji_fixture, size=32)
    assert (ds.images[..., :3] <= ds.images[..., 3:4]).all()      # colour never exceeds alpha
    assert (ds.images[..., 3] == 0).any() and (ds.images[..., 3] == 255).any()
    transparent = ds.images[..., 3] == 0
    assert (ds.images[transparent][:, :3] == 0).all()             # no garbage colour under alpha 0


def test_premultiplied_resize_has_no_dark_fringe():
    # A red square on a transparent *green* background: straight-alpha resizing would bleed
    # green into the edge; premultiplied resizing must not.
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[..., 1] = 255
    arr[2:6, 2:6] = (255, 0, 0, 255)
    out = unpremultiply(to_premultiplied(Image.fromarray(arr, "RGBA"), 4))
    visible = out[..., 3] > 0
    assert (out[visible][:, 1] == 0).all()


def test_split_is_deterministic_and_shared_across_styles(emoji_fixture):
    a = build_emoji(emoji_fixture, size=16, validation_fraction=0.3)
    b = build_emoji(emoji_fixture, size=16, validation_fraction=0.3)
    np.testing.assert_array_equal(a.split, b.split)
    np.testing.assert_array_equal(a.images, b.images)
    for e in set(a.emoji_ids):
        assert len(set(a.split[a.emoji_ids == e])) == 1
    assert {TRAIN, VALIDATION} == set(a.split.tolist())
    # sha256(id)'s first 8 bytes over 2**64 (1f600: 0.1897, 1f602: 0.4466) below the fraction: held out.
    assert (split_of("1f600", 0.19), split_of("1f600", 0.18)) == (VALIDATION, TRAIN)
    assert (split_of("1f602", 0.45), split_of("1f602", 0.44)) == (VALIDATION, TRAIN)
    held_out = [split_of(f"{i:x}", 0.3) == VALIDATION for i in range(0x1F000, 0x1F000 + 4000)]
    assert abs(np.mean(held_out) - 0.3) < 0.03  # a fair hash: the standard error is 0.007


def test_npz_round_trip_without_pickle(emoji_fixture, tmp_path):
    ds = build_emoji(emoji_fixture, size=16)
    back = load_dataset(save_dataset(ds, tmp_path / "d.npz"))
    np.testing.assert_array_equal(back.images, ds.images)
    assert back.styles == ds.styles and back.categories == ds.categories
    assert list(back.captions) == list(ds.captions)
    with np.load(tmp_path / "d.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_write_dataset_card_and_contact_sheet(emoji_fixture, tmp_path):
    ds = build_emoji(emoji_fixture, size=16)
    from diffusion.data.sources import SOURCES

    paths = write_dataset(ds, tmp_path, "emoji-16", SOURCES)
    card = (tmp_path / "emoji-16.card.md").read_text()
    assert "CC-BY-4.0" in card and "Apache-2.0" in card and "MIT" in card
    assert Image.open(paths["contact"]).size[0] > 16


def test_folder_builder_captions_and_style(tmp_path):
    folder = tmp_path / "pixelart"
    folder.mkdir()
    for i, colour in enumerate([(255, 0, 0, 255), (0, 0, 255, 128), (0, 255, 0, 0)]):
        Image.new("RGBA", (20, 10), colour).save(folder / f"tile_{i}.png")
    (folder / "tile_0.txt").write_text("a red tile\n")
    ds = build_folder(folder, size=16)
    assert ds.styles == ["none", "pixelart"] and (ds.style_ids == 1).all()
    assert list(ds.captions) == ["a red tile", "tile 1", "tile 2"]
    assert ds.images.shape == (3, 16, 16, 4)
    assert (build_folder(folder, size=16, style="studio").styles[1]) == "studio"
