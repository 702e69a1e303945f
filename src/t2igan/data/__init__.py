"""Datasets: AttnGAN-layout CUB/COCO/Oxford-102, folders of captioned images, and the built-in SynthBirds."""

from t2igan.data.base import (
    DATASETS,
    CaptionCorpus,
    DataConfig,
    DataError,
    ImageRecord,
    TextImageDataset,
    crop_to_bbox,
    load_corpus,
)
from t2igan.data.collate import collate_batch, make_loader, sort_by_length

__all__ = [
    "DATASETS",
    "CaptionCorpus",
    "DataConfig",
    "DataError",
    "ImageRecord",
    "TextImageDataset",
    "collate_batch",
    "crop_to_bbox",
    "load_corpus",
    "make_loader",
    "sort_by_length",
]
