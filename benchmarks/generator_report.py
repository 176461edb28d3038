"""Print the generator's quality/latency tables (markdown) from an ExitProfile, without re-measuring.

    .venv/bin/python benchmarks/generator_report.py [--profile serving/profiles/default.json] [--steps 20]

The README's generator tables are this script's output for the shipped profile; the profile itself
is made by `aigc-edge generator profile`.
"""
from __future__ import annotations

import argparse

from envs.profile import load_profile
from serving.generator.profiling import profile_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="ExitProfile JSON (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=20, help="step count of the main table")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    print(profile_table(profile, args.steps))
    grid = [q.steps for q in profile.plans[0].quality]
    print(f"\naccuracy_ratio (FD) by step count, {profile.machine.dtype} on {profile.machine.cpu}:\n")
    print("| plan | " + " | ".join(f"{s} steps" for s in grid) + " |")
    print("|---|" + "---|" * len(grid))
    for p in profile.plans:
        cells = [f"{q.accuracy_ratio:.3f} ({q.fd:.1f})" for q in p.quality]
        print(f"| `{p.name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
