"""The generator folder: U-ViT + scheduler + quality classifier + metadata, saved atomically.

Layout (each model part is a diffusers `save_pretrained` folder, loadable on its own):

    unet/        config.json, diffusion_pytorch_model.safetensors   (the EMA weights)
    scheduler/   scheduler_config.json                              (the training noise schedule)
    classifier/  config.json, diffusion_pytorch_model.safetensors   (the quality classifier)
    generator.json   data set, class names, plans, sampling defaults, training summary
    manifest.json    sha256 of every file above, written last

A save writes into a temporary sibling folder and renames it into place, so a crash never leaves
a half-written model under the final name. A load checks the manifest first: a missing manifest or
file is reported as a partial checkpoint, a changed file as a corrupt one.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

from envs.config import ConfigError
from serving.generator.classifier import QualityClassifier
from serving.generator.model import MultiExitUViT
from serving.generator.plans import ExitPlan, build_plans

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "default"
WEIGHTS_FILE = "unet/diffusion_pytorch_model.safetensors"
FORMAT_VERSION = 1

# By name, imported when used: the DPM and Euler modules import SciPy (tens of MB a serving
# replica, which samples with DDIM, never needs).
SCHEDULERS = {"ddim": ("scheduling_ddim", "DDIMScheduler"), "ddpm": ("scheduling_ddpm", "DDPMScheduler"),
              "dpm": ("scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler"),
              "euler": ("scheduling_euler_discrete", "EulerDiscreteScheduler")}


def training_scheduler() -> DDPMScheduler:
    """v-prediction on a cosine schedule; `trailing` spacing so even 1 step starts from pure noise."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=True)


@dataclass
class Generator:
    """Everything needed to sample and to measure quality, as loaded from one folder."""
    unet: MultiExitUViT
    scheduler_config: dict
    classifier: QualityClassifier
    meta: dict[str, Any]
    path: Path | None = None
    plans: dict[str, ExitPlan] = field(init=False)

    def __post_init__(self) -> None:
        self.plans = build_plans(self.unet.exit_names, self.meta.get("plans", {}))

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])

    def plan(self, name: str) -> ExitPlan:
        if name not in self.plans:
            raise ConfigError(f"plan: unknown plan {name!r}; allowed: {list(self.plans)}")
        return self.plans[name]

    def scheduler(self, kind: str | None = None):
        """A fresh scheduler of `kind` (default: the model's) built from the training schedule."""
        kind = kind or self.meta.get("sampling", {}).get("scheduler", "ddim")
        if kind not in SCHEDULERS:
            raise ConfigError(f"scheduler: unknown scheduler {kind!r}; allowed: {sorted(SCHEDULERS)}")
        module, name = SCHEDULERS[kind]
        cls = getattr(importlib.import_module(f"diffusers.schedulers.{module}"), name)
        # What `from_config` passes (the config's keys the constructor takes), without its look at
        # every "compatible" scheduler, which imports them all, SciPy with them.
        takes = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in self.scheduler_config.items() if k in takes})

    @property
    def weights_hash(self) -> str:
        return self.meta.get("weights_sha256", "")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_generator(folder: str | Path, unet: MultiExitUViT, scheduler_config: dict,
                   classifier: QualityClassifier, meta: dict[str, Any]) -> Path:
    """Write the generator folder atomically (temp sibling, then rename); returns the folder."""
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        DDPMScheduler.from_config(scheduler_config).save_pretrained(tmp / "scheduler")
        classifier.save_pretrained(tmp / "classifier", safe_serialization=True)
        meta = dict(meta, format_version=FORMAT_VERSION, weights_sha256=sha256_file(tmp / WEIGHTS_FILE))
        (tmp / "generator.json").write_text(json.dumps(meta, indent=2) + "\n")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {str(p.relative_to(tmp)): sha256_file(p) for p in files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def verify_generator(folder: str | Path) -> dict[str, str]:
    """Check the folder against its manifest; raise ConfigError naming what is missing or changed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model: generator folder {str(folder)!r} does not exist "
                          "(train one with `aigc-edge generator train`)")
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"model: {str(folder)!r} is a partial or foreign checkpoint: manifest.json is "
                          "missing (was the save interrupted?); retrain or restore it from git/MLflow")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model: {str(folder)!r} is corrupt: manifest.json is not valid JSON ({exc})") from None
    for name, digest in manifest.items():
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"model: {str(folder)!r} is a partial checkpoint: {name} is missing")
        if sha256_file(path) != digest:
            raise ConfigError(f"model: {str(folder)!r} is corrupt: {name} does not match its sha256 "
                              "in manifest.json; retrain or restore it from git/MLflow")
    return manifest


def load_generator(folder: str | Path | None = None) -> Generator:
    """Load a generator folder (default: the shipped `serving/models/default`), verified first."""
    folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
    verify_generator(folder)
    try:
        meta = json.loads((folder / "generator.json").read_text())
        unet = MultiExitUViT.from_pretrained(folder / "unet", low_cpu_mem_usage=False).eval()
        classifier = QualityClassifier.from_pretrained(folder / "classifier", low_cpu_mem_usage=False).eval()
        scheduler_config = dict(DDPMScheduler.load_config(folder / "scheduler"))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"model: {str(folder)!r} could not be loaded: {exc}") from exc
    return Generator(unet, scheduler_config, classifier, meta, path=folder.resolve())
