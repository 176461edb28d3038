"""The quality classifier: a small CNN trained on the generator's data set, no hub weights needed.

Two quality figures come from it (DESIGN.md, ExitProfile): its accuracy on class-conditional
samples (asked label = predicted label), and the Frechet distance between its penultimate features
of generated and of real images (FD-classifier; lower is better). Its accuracy on real test images
is the reference: `accuracy_ratio = sample accuracy / real accuracy`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from tqdm.auto import tqdm

from serving.generator.data import Split


class QualityClassifier(ModelMixin, ConfigMixin):
    """conv-pool-conv-pool-conv-avgpool-linear(features)-linear(logits), for 8x8 to 28x28 grey images."""

    @register_to_config
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 128):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(16 * w, feature_dim), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the FD space), shape [B, feature_dim]."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def train_classifier(train: Split, num_classes: int, epochs: int = 3, batch_size: int = 128,
                     lr: float = 2e-3, width: int = 32, seed: int = 0, show_progress: bool = True,
                     ) -> QualityClassifier:
    torch.manual_seed(seed)
    model = QualityClassifier(in_channels=train.images.shape[1], num_classes=num_classes, width=width)
    steps = epochs * (len(train) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(total=steps, desc="classifier", disable=not show_progress, leave=False)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            x = train.images[idx]
            # light augmentation: a random shift of up to 1 pixel
            dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


@torch.no_grad()
def classify(model: QualityClassifier, images: torch.Tensor, batch_size: int = 500
             ) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, penultimate features) of images in [-1, 1]."""
    model.eval()
    preds, feats = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(images[start:start + batch_size].float())
        feats.append(f)
        preds.append(model.head(f).argmax(-1))
    return torch.cat(preds).numpy(), torch.cat(feats).double().numpy()


def accuracy(model: QualityClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    preds, _ = classify(model, images)
    return float((preds == labels.numpy()).mean())


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (as in FID)."""
    from scipy import linalg   # here: SciPy costs a serving replica ~60 MB it never uses

    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU features make the product singular: harmless here
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean), 0.0))


def real_floor(model: QualityClassifier, test: Split, n: int, seed: int = 0) -> tuple[float, float]:
    """(accuracy on all real test images, FD between two disjoint real test sets of n images each)."""
    acc = accuracy(model, test.images, test.labels)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    n = min(n, len(test) // 2)
    _, fa = classify(model, test.images[order[:n]])
    _, fb = classify(model, test.images[order[n:2 * n]])
    return acc, frechet_distance(fa, fb)
