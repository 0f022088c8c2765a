"""Datasets: adapters for the public emotion datasets, a generic folder/CSV reader, splits."""

from __future__ import annotations

from .fashion_mnist import FASHION_MNIST_DIR, DatasetError, FashionMNIST

__all__ = ["FASHION_MNIST_DIR", "DatasetError", "FashionMNIST"]
