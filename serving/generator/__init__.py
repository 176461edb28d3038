"""The multi-exit U-ViT generator: model, data, training, exit-plan sampling, quality, profiling.

    from serving.generator import load_generator, generate
    gen = load_generator()                      # the shipped serving/models/default
    images = generate(gen, [7, 7], plan="exit1", steps=10)   # [2, 1, 28, 28] in [-1, 1]

Modules: `model` (MultiExitUViT), `plans` (ExitPlan), `data`, `config` (GeneratorConfig),
`train`, `sampling`, `classifier` (QualityClassifier, FD), `checkpoint` (atomic folders),
`profiling` (ExitProfile measurement).
"""
from serving.generator.checkpoint import DEFAULT_MODEL_DIR, Generator, load_generator, save_generator
from serving.generator.model import FULL_EXIT, MultiExitUViT
from serving.generator.plans import ExitPlan
from serving.generator.sampling import generate

__all__ = ["DEFAULT_MODEL_DIR", "FULL_EXIT", "ExitPlan", "Generator", "MultiExitUViT", "generate",
           "load_generator", "save_generator"]
