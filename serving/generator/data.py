"""Training data of the generator and its quality classifier, all local: nothing is downloaded.

- `fashion-mnist`: the idx files of Debian's `dataset-fashion-mnist` (MIT), 28x28, 10 classes.
- `digits`: scikit-learn's bundled 8x8 digits, 10 classes (tiny tests and `--quick`).
Images come back as float32 tensors in [-1, 1] of shape [N, 1, H, W], labels as int64.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from envs.config import ConfigError

DATASETS = ("fashion-mnist", "digits")
FASHION_MNIST_DIR = Path(os.environ.get("AIGC_EDGE_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle-boot")
INSTALL_HINT = "sudo apt-get install dataset-fashion-mnist"


@dataclass
class Split:
    images: torch.Tensor  # [N, 1, H, W] float32 in [-1, 1]
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sample_size(self) -> int:
        return self.train.images.shape[-1]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> Dataset:
    files = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
             "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
    missing = [name for name in files.values() if not (root / name).is_file()]
    if missing:
        raise ConfigError(f"dataset 'fashion-mnist' is missing ({', '.join(missing)} not in {root}); "
                          f"install it with: {INSTALL_HINT}  (or use dataset=digits)")
    try:
        arrays = {key: _read_idx(root / name) for key, name in files.items()}
    except (OSError, EOFError, ValueError) as exc:
        raise ConfigError(f"dataset 'fashion-mnist' in {root} is unreadable ({exc}); reinstall it with: "
                          f"sudo apt-get install --reinstall dataset-fashion-mnist") from exc

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        images = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)[:, None]
        return Split(images, torch.from_numpy(y.astype(np.int64)))

    return Dataset("fashion-mnist", split(arrays["train_x"], arrays["train_y"]),
                   split(arrays["test_x"], arrays["test_y"]), FASHION_MNIST_CLASSES)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_test = int(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", Split(images[train], labels[train]), Split(images[test], labels[test]),
                   tuple(str(i) for i in range(10)))


def load_dataset(name: str) -> Dataset:
    if name == "fashion-mnist":
        return load_fashion_mnist()
    if name == "digits":
        return load_digits()
    raise ConfigError(f"dataset: unknown dataset {name!r}; allowed: {list(DATASETS)}")
