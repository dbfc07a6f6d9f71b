"""Training datasets: emoji sets from registry packages and a studio's own image folders.

A dataset is one compact ``.npz`` (uint8 premultiplied RGBA images, captions, style and
category ids, split flags) read with ``allow_pickle=False``; see ``dataset.py``.
"""

from diffusion.data.dataset import ImageDataset, load_dataset, save_dataset

__all__ = ["ImageDataset", "load_dataset", "save_dataset"]
