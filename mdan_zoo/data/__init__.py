"""Datasets: adapters for the public emotion datasets, a generic folder/CSV reader, splits,
transforms; ``device_decode``: JPEG decoding and augmentation on the training device
(``TrainConfig.decode = "gpu"``). Layouts, splits and errors: docs/datasets.md."""

from __future__ import annotations

from .adapters import (
    SPLIT_DIR_NAME,
    list_abstract,
    list_artphoto,
    list_csv,
    list_emotion6,
    list_fi,
    list_folder,
    list_iaps,
    list_webemo,
    url_basename,
)
from .catalog import DATASETS, DatasetInfo
from .dataset import IMAGE_EXTENSIONS, ImageDataset, Listing, check_files
from .device_decode import EncodedBatch, EncodedImages, collate_encoded, decode_batch
from .emoset import EMOSET_ATTRIBUTES, EMOSET_SPLITS, EmoSetAttributes, list_emoset
from .fashion_mnist import FASHION_MNIST_DIR, DatasetError, FashionMNIST
from .findingemo import (
    FINDINGEMO_ANNOTATIONS,
    findingemo_annotation_file,
    list_findingemo,
    read_findingemo_annotations,
    valence_by_label,
    valence_table,
)
from .loader import default_split_file, list_datasets, load_dataset, load_listing, load_splits
from .splits import (
    DEFAULT_SPLITS,
    SplitError,
    SplitSpec,
    content_hash,
    load_or_make_split,
    make_split,
    split_positions,
    stratified_folds,
    stratified_partition,
)
from .transforms import build_transform, denormalize, preprocessing_from, train_eval_transforms

__all__ = [
    "DATASETS",
    "DEFAULT_SPLITS",
    "EMOSET_ATTRIBUTES",
    "EMOSET_SPLITS",
    "FASHION_MNIST_DIR",
    "FINDINGEMO_ANNOTATIONS",
    "IMAGE_EXTENSIONS",
    "SPLIT_DIR_NAME",
    "DatasetError",
    "DatasetInfo",
    "EmoSetAttributes",
    "EncodedBatch",
    "EncodedImages",
    "FashionMNIST",
    "ImageDataset",
    "Listing",
    "SplitError",
    "SplitSpec",
    "build_transform",
    "check_files",
    "collate_encoded",
    "content_hash",
    "decode_batch",
    "default_split_file",
    "denormalize",
    "findingemo_annotation_file",
    "list_abstract",
    "list_artphoto",
    "list_csv",
    "list_datasets",
    "list_emoset",
    "list_emotion6",
    "list_fi",
    "list_findingemo",
    "list_folder",
    "list_iaps",
    "list_webemo",
    "load_dataset",
    "load_listing",
    "load_or_make_split",
    "load_splits",
    "make_split",
    "preprocessing_from",
    "read_findingemo_annotations",
    "split_positions",
    "stratified_folds",
    "stratified_partition",
    "train_eval_transforms",
    "url_basename",
    "valence_by_label",
    "valence_table",
]
