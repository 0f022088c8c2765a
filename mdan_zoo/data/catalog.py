"""The catalogue of dataset adapters: name -> how to list it, its taxonomy, layout and source.

Its own module so that every adapter module (the paper's six and folder/CSV in
:mod:`~mdan_zoo.data.adapters`, the newer releases beside it) is imported by one place and
imports none of the others' registries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .adapters import (
    list_abstract,
    list_artphoto,
    list_csv,
    list_emotion6,
    list_fi,
    list_folder,
    list_iaps,
    list_webemo,
)
from .dataset import Listing
from .emoset import list_emoset
from .findingemo import list_findingemo

__all__ = ["DATASETS", "DatasetInfo"]


@dataclass(frozen=True)
class DatasetInfo:
    """One registered adapter: how to list it, its default taxonomy and split."""

    name: str
    lister: Callable[..., Listing]
    taxonomy: str | None
    """Built-in taxonomy name, or None when the caller must pass one (folder, csv)."""
    layout: str
    source: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "fi", list_fi, "fi", "root/<emotion>/<emotion>_<id>.jpg",
            "You et al., AAAI 2016 (~23k images, Flickr/Instagram)",
        ),
        DatasetInfo(
            "webemo", list_webemo, "webemo",
            "root/category.txt, train25.txt, test25.txt; images root/<split>/<label>/<basename>",
            "Panda et al., ECCV 2018 (list files; images fetched by the user)",
        ),
        DatasetInfo(
            "emotion6", list_emotion6, "emotion6",
            "root/images/<emotion>/<N>.jpg, root/ground_truth.txt",
            "Peng et al., CVPR 2015 (6 x 330 images)",
        ),
        DatasetInfo(
            "artphoto", list_artphoto, "artphoto", "root/<emotion>_<...>.jpg (flat)",
            "Machajdik & Hanbury, ACM MM 2010 (806 images)",
        ),
        DatasetInfo(
            "abstract", list_abstract, "abstract",
            "root/ABSTRACT_groundTruth.csv + the 280 images anywhere under root",
            "Machajdik & Hanbury, ACM MM 2010 (280 images, 228 without tied votes)",
        ),
        DatasetInfo(
            "iaps", list_iaps, "iaps",
            "root/iaps_list.txt ('<number> <category>' lines) + root/**/<number>.jpg",
            "Mikels et al., 2005 (IAPS subset; images licence-restricted, supplied by the user)",
        ),
        DatasetInfo(
            "emoset", list_emoset, "emoset",
            "root/info.json, train.json, val.json, test.json; root/image/<emotion>/<id>.jpg, "
            "root/annotation/<emotion>/<id>.json",
            "Yang et al., ICCV 2023 (EmoSet-118K: 118,102 images, official split, attributes)",
        ),
        DatasetInfo(
            "findingemo", list_findingemo, "plutchik3",
            "findingemo-light's annotations_single.ann + images at root/Run_<n>/<folder>/<file> "
            "(download_data(target_dir=root))",
            "Mertens et al., NeurIPS 2024 D&B (25,869 labelled images; images fetched by the user)",
        ),
        DatasetInfo(
            "folder", list_folder, None,
            "root/[<coarse>/[<mid>/]]<fine>/**/<image> for any taxonomy",
            "your own images",
        ),
        DatasetInfo(
            "csv", list_csv, None, "a CSV file of path,label rows (paths relative to it)",
            "your own images",
        ),
    )
}  # fmt: skip
"""Adapter name -> :class:`DatasetInfo`; :func:`mdan_zoo.data.load_dataset` reads it."""
