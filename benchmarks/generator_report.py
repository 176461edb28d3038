"""The generator's quality/latency tables (markdown) from an ExitProfile, without re-measuring.

    .venv/bin/python benchmarks/generator_report.py [--profile serving/profiles/default.json] [--steps 20]

Writes `benchmarks/results/generator_profile.md` (docs/generator.md links it) and prints it. The
profile itself is made by `aigc-edge generator profile`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs.profile import DEFAULT_PROFILE_PATH, load_profile  # noqa: E402
from serving.generator.profiling import profile_table  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "generator_profile.md"


def report(profile, steps: int, source: str) -> str:
    grid = [q.steps for q in profile.plans[0].quality]
    lines = ["# Generator: quality and latency by exit plan", "",
             f"From the ExitProfile `{source}` (measured by `aigc-edge generator profile` on "
             f"{profile.machine.cpu}, {profile.machine.threads} thread(s), {profile.machine.dtype}); "
             f"written by `.venv/bin/python benchmarks/generator_report.py --steps {steps}`.", "",
             profile_table(profile, steps), "",
             f"accuracy_ratio (FD) by step count, {profile.machine.dtype} on {profile.machine.cpu}:", "",
             "| plan | " + " | ".join(f"{s} steps" for s in grid) + " |",
             "|---|" + "---|" * len(grid)]
    for p in profile.plans:
        cells = [f"{q.accuracy_ratio:.3f} ({q.fd:.1f})" for q in p.quality]
        lines.append(f"| `{p.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="ExitProfile JSON (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=20, help="step count of the main table")
    parser.add_argument("--out", default=str(OUT), help=f"markdown file to write (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    source = args.profile or str(DEFAULT_PROFILE_PATH.relative_to(ROOT))
    text = report(load_profile(args.profile), args.steps, source)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
