"""The multi-exit U-ViT generator: model exits, plans, checkpoints, input errors, quality metrics, CLI.

Fast tests use a tiny model on sklearn's 8x8 digits; the end-to-end ones are marked slow.
"""
from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.config import ConfigError
from envs.profile import load_profile
from serving.generator import data as data_module
from serving.generator.checkpoint import load_generator, save_generator, training_scheduler, verify_generator
from serving.generator.classifier import QualityClassifier, frechet_distance
from serving.generator.config import QUICK_OVERRIDES, load_generator_config
from serving.generator.model import MultiExitUViT
from serving.generator.plans import ExitPlan, build_plans
from serving.generator.profiling import relative_flops
from serving.generator.sampling import generate
from serving.generator.train import exit_split, min_snr_weight

torch.set_num_threads(1)


def tiny_unet(**kw) -> MultiExitUViT:
    args = dict(sample_size=8, patch_size=2, hidden_size=32, depth=3, num_heads=2, mlp_ratio=2.0,
                stem_channels=4, num_classes=10, exits=(1, 2))
    args.update(kw)
    torch.manual_seed(0)
    unet = MultiExitUViT(**args)
    with torch.no_grad():  # adaLN-Zero starts as identity; give the gates weights so exits differ
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet.eval()


def tiny_generator(tmp_path: Path, plans=None) -> Path:
    classifier = QualityClassifier(num_classes=10, width=4, feature_dim=16).eval()
    meta = {"dataset": "digits", "class_names": [str(i) for i in range(10)],
            "plans": plans if plans is not None else {"deep-first": ["full", "exit1"]},
            "sampling": {"scheduler": "ddim", "steps": 4, "guidance_scale": 2.0, "bf16": False}}
    return save_generator(tmp_path / "gen", tiny_unet(), dict(training_scheduler().config), classifier, meta)


# ---- model ----------------------------------------------------------------------------------------
def test_every_exit_predicts_the_sample_shape_and_the_joint_pass_matches():
    unet = tiny_unet()
    assert unet.exit_names == ["exit1", "exit2", "full"]
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 999]), torch.tensor([0, 4, 10])
    with torch.no_grad():
        joint = unet.forward_all_exits(x, t, y)
        for name in unet.exit_names:
            out = unet(x, t, y, exit=name)
            assert out.shape == x.shape
            torch.testing.assert_close(out, joint[name])
        assert not torch.allclose(joint["exit1"], joint["full"])


def test_unknown_exit_and_bad_exit_levels_are_rejected():
    unet = tiny_unet()
    with pytest.raises(ValueError, match="unknown exit 'exit9'.*exit1"):
        unet(torch.zeros(1, 1, 8, 8), 5, torch.tensor([0]), exit="exit9")
    with pytest.raises(ValueError, match="exits must be increasing"):
        MultiExitUViT(sample_size=8, patch_size=2, depth=3, exits=(2, 1))


def test_shallow_exits_cost_fewer_flops():
    path_flops = relative_flops(load_generator_from_unet(tiny_unet()))
    assert path_flops["exit1"] < path_flops["exit2"] < path_flops["full"] == 1.0
    assert path_flops["exit1"] <= 0.4
    assert path_flops["deep-first"] == pytest.approx((path_flops["exit1"] + 1.0) / 2)


def load_generator_from_unet(unet):
    from serving.generator.checkpoint import Generator
    classifier = QualityClassifier(num_classes=10, width=4, feature_dim=16)
    return Generator(unet, dict(training_scheduler().config), classifier,
                     {"dataset": "digits", "class_names": [str(i) for i in range(10)],
                      "plans": {"deep-first": ["full", "exit1"]}})


# ---- plans, loss pieces, config --------------------------------------------------------------------
def test_plan_schedule_spreads_exits_evenly_noisiest_first():
    plan = ExitPlan("deep-first", ("full", "exit1"))
    assert plan.exits(4) == ["full", "full", "exit1", "exit1"]
    assert plan.exits(1) == ["full"]
    assert ExitPlan("taper", ("full", "exit2", "exit1")).exits(6) == ["full"] * 2 + ["exit2"] * 2 + ["exit1"] * 2
    plans = build_plans(["exit1", "full"], {"shallow-first": ["exit1", "full"]})
    assert list(plans) == ["exit1", "full", "shallow-first"]
    with pytest.raises(ConfigError, match="must match"):
        build_plans(["exit1", "full"], {"Bad Name": ["full"]})
    with pytest.raises(ConfigError, match="exits must be from"):
        build_plans(["exit1", "full"], {"deep": ["exit7"]})


def test_exit_split_and_min_snr_weight():
    sizes = exit_split(128, [0.2, 0.2, 0.2, 0.4])
    assert sum(sizes) == 128 and sizes[3] == max(sizes) and 25 <= min(sizes) <= 26
    sizes = exit_split(10, [1, 1, 1, 7])
    assert sum(sizes) == 10 and min(sizes) >= 1
    alphas = training_scheduler().alphas_cumprod
    w = min_snr_weight(alphas, torch.tensor([0, 500, 999]), gamma=5.0)
    assert w[0] < w[1] <= w[2] <= 1.0  # low-noise steps are down-weighted, the noisiest keep weight 1
    assert w[2] == pytest.approx(1.0, abs=1e-3)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="train.exit_weights"):
        load_generator_config(overrides=["train.exit_weights=[1, 1]"])
    with pytest.raises(ConfigError, match="model.colour: unknown key"):
        load_generator_config(overrides=["model.colour=red"])
    with pytest.raises(ConfigError, match="plans"):
        load_generator_config(overrides=["plans.deep-first=[full, exit9]"])
    cfg = load_generator_config(overrides=QUICK_OVERRIDES)
    assert cfg.dataset == "digits" and cfg.model.patch_size == 2


# ---- checkpoints -----------------------------------------------------------------------------------
def test_save_load_round_trip_is_bit_for_bit(tmp_path):
    folder = tiny_generator(tmp_path)
    gen = load_generator(folder)
    original = tiny_unet()
    for (name, a), (_, b) in zip(original.state_dict().items(), gen.unet.state_dict().items()):
        assert torch.equal(a, b), name
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(original(x, t, y, exit="exit1"), gen.unet(x, t, y, exit="exit1"))
    # saving the loaded model again gives byte-identical weights
    again = save_generator(tmp_path / "again", gen.unet, gen.scheduler_config, gen.classifier, gen.meta)
    name = "unet/diffusion_pytorch_model.safetensors"
    assert (again / name).read_bytes() == (folder / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_corrupt_or_partial_checkpoints_give_clear_errors(tmp_path):
    folder = tiny_generator(tmp_path)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="corrupt: unet/diffusion_pytorch_model.safetensors"):
        load_generator(folder)
    weights.unlink()
    with pytest.raises(ConfigError, match="partial checkpoint: unet/diffusion_pytorch_model.safetensors is missing"):
        verify_generator(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="manifest.json is missing"):
        load_generator(folder)
    with pytest.raises(ConfigError, match="does not exist"):
        load_generator(tmp_path / "nowhere")


# ---- sampling and bad input -----------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "dpm", "euler"])
def test_any_diffusers_scheduler_samples_a_plan(tmp_path, scheduler):
    gen = load_generator(tiny_generator(tmp_path))
    images = generate(gen, [0, 3, 9], plan="deep-first", steps=3, scheduler=scheduler)
    assert images.shape == (3, 1, 8, 8) and torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1
    again = generate(gen, [0, 3, 9], plan="deep-first", steps=3, scheduler=scheduler)
    assert torch.equal(images, again)  # seeded


def test_bad_requests_name_the_field_and_the_allowed_values(tmp_path):
    gen = load_generator(tiny_generator(tmp_path))
    with pytest.raises(ConfigError, match=r"plan: unknown plan 'exit9'; allowed: \['exit1', 'exit2', 'full', 'deep-first'\]"):
        generate(gen, [0], plan="exit9")
    with pytest.raises(ConfigError, match=r"label: must be an integer in 0..9"):
        generate(gen, [10])
    with pytest.raises(ConfigError, match="label"):
        generate(gen, [-1])
    for steps in (0, -3):
        with pytest.raises(ConfigError, match=r"steps: must be an integer in 1..1000"):
            generate(gen, [1], steps=steps)
    with pytest.raises(ConfigError, match="scheduler: unknown scheduler 'magic'"):
        generate(gen, [1], steps=2, scheduler="magic")


def test_missing_dataset_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        data_module.load_fashion_mnist(tmp_path)
    with pytest.raises(ConfigError, match=r"dataset: unknown dataset 'cifar'; allowed"):
        data_module.load_dataset("cifar")


def test_digits_data_are_scaled_and_split():
    d = data_module.load_digits()
    assert d.train.images.shape[1:] == (1, 8, 8) and d.num_classes == 10
    assert d.train.images.min() >= -1 and d.train.images.max() <= 1
    assert len(d.train) + len(d.test) == 1797


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, b) < frechet_distance(a, b + 1.0)
    assert frechet_distance(a, b + 1.0) == pytest.approx(8.0, rel=0.2)


# ---- end to end ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_quick_train_then_profile_sample_and_bench(tmp_path, isolated_home, capsys):
    """`generator train --quick` logs to MLflow and registers the champion; profile/sample/bench use it."""
    from cluster.cli import main
    from policies import tracking

    model = tmp_path / "model"
    code = main(["generator", "train", "--quick", "--out", str(model), "--json",
                 "--set", "train.minutes=0.15", "--set", "train.max_steps=25"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model_dir"] == str(model.resolve()) and result["classifier_accuracy"] > 0.5
    assert set(result["sample_grids"]) == {"exit1", "exit2", "exit3", "full"}

    mlflow = tracking.configure_mlflow()
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(tracking.GENERATOR_MODEL_NAME, tracking.CHAMPION_ALIAS)
    assert version.run_id == result["run_id"]
    run = client.get_run(result["run_id"])
    assert run.data.params["dataset"] == "digits" and "losses/full" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "samples")}
    assert artifacts == {f"samples/samples_{e}.png" for e in ("exit1", "exit2", "exit3", "full")}

    out = tmp_path / "profile.json"
    assert main(["generator", "profile", "--model", str(model), "--out", str(out), "--json",
                 "--set", "profile.num_samples=40", "--set", "profile.steps_grid=[2,4]"]) == 0
    capsys.readouterr()
    profile = load_profile(out)
    assert profile.plan_names == ["exit1", "exit2", "exit3", "full", "deep-first", "shallow-first"]
    assert profile.plan("exit1").relative_flops < 0.4 and profile.plan("full").relative_flops == 1.0
    assert [q.steps for q in profile.plan("full").quality] == [2, 4]

    png = tmp_path / "s.png"
    assert main(["generator", "sample", "--model", str(model), "--label", "3", "--plan", "exit1",
                 "--steps", "3", "--count", "4", "--out", str(png), "--json"]) == 0
    assert png.is_file() and json.loads(capsys.readouterr().out.strip())["class_name"] == "3"
    assert main(["generator", "sample", "--model", str(model), "--label", "12", "--out", str(png)]) == 2
    assert "label: must be an integer in 0..9" in capsys.readouterr().err
    assert main(["generator", "sample", "--model", str(model), "--label", "1", "--plan", "warp",
                 "--out", str(png)]) == 2
    assert "allowed: ['exit1'" in capsys.readouterr().err

    from serving.bench import bench_generator
    bench = bench_generator(Namespace(model=str(model)))
    assert [r["plan"] for r in bench["plans"]] == profile.plan_names
    assert set(bench["plans"][0]) >= {"plan", "relative_flops", "ms_per_step_b1", "ms_per_step_b16"}
    assert bench["images_per_s"] > 0


def held_out_loss(unet, images, labels, exit_name: str) -> float:
    """The training objective (min-SNR-weighted v-prediction MSE) of one exit, on a fixed draw."""
    sched = training_scheduler()
    g = torch.Generator().manual_seed(123)
    noise = torch.randn(images.shape, generator=g)
    t = torch.randint(0, 1000, (len(labels),), generator=g)
    with torch.no_grad():
        pred = unet.eval()(sched.add_noise(images, noise, t), t, labels, exit=exit_name)
    per_sample = ((pred - sched.get_velocity(images, noise, t)) ** 2).mean(dim=(1, 2, 3))
    return float((min_snr_weight(sched.alphas_cumprod, t, 5.0) * per_sample).mean())


def test_joint_training_lowers_the_held_out_loss_of_every_exit():
    """The loop trains every exit: 60 steps on digits cut each exit's loss on held-out test images by > 10%."""
    from serving.generator.train import build_unet, train_loop

    data = data_module.load_digits()
    cfg = load_generator_config(overrides=QUICK_OVERRIDES + ["train.minutes=10", "train.max_steps=60",
                                                             "model.hidden_size=32", "model.depth=3",
                                                             "model.exits=[1, 2]", "train.exit_weights=[1, 1, 1]"])
    torch.manual_seed(0)
    unet = build_unet(cfg, 8, 10)
    x, y = data.test.images[:256], data.test.labels[:256]
    before = {e: held_out_loss(unet, x, y, e) for e in unet.exit_names}
    ema, stats = train_loop(unet, data.train.images, data.train.labels, cfg, show_progress=False)
    after = {e: held_out_loss(unet, x, y, e) for e in unet.exit_names}
    assert stats["steps"] == 60
    for e in unet.exit_names:
        assert after[e] < 0.9 * before[e], (e, before[e], after[e])
