"""Map exchange simulation: how much of the network each node learns, and who can route.

    .venv/bin/python bench/mapsim.py                       # 100 nodes, 5 seeds, degrees 4,5,6
    .venv/bin/python bench/mapsim.py --nodes 200 --seeds 3 --budgets 16,24,32,none
    .venv/bin/python bench/mapsim.py --hints 8 --fresh     # all neighbours as hints, fresh draws

The simulation itself is tests/core/map_simulation.py (the test asserts the
default policy's numbers on three seeds). Per row, over the seeds: max known
is the largest fraction of the other nodes one node knew at any time after
the maps settled; routable hN is the fraction of sampled (sender, recipient)
pairs with a route of exactly N relays; "full hN" is the same if every node
knew every link, the ceiling no map policy can pass.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_budget(text: str) -> int | None:
    return None if text == "none" else int(text)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def row(nodes: int, budget: int | None, results: list) -> str:
    def average(field: str, hops: int | None = None) -> float:
        values = [getattr(outcome, field) for outcome in results]
        if hops is not None:
            values = [value[hops] for value in values if hops in value]
        return mean(values)

    budget_text = "none" if budget is None else str(budget)
    return (
        f"{nodes:>5} {average('average_degree'):>5.2f} {budget_text:>6}"
        f" {max(outcome.max_known for outcome in results):>6.0%}"
        f" {average('mean_known'):>7.0%}"
        + "".join(f" {average('routable', hops):>5.0%}" for hops in (1, 2, 3))
        + "".join(f" {percent(average('full_map_routable', hops)):>7}" for hops in (2, 3))
        + f" {average('rounds'):>6.1f} {average('mean_choice_seconds') * 1e6:>7.0f}us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--degrees", default="4,5,6", help="average degrees, comma-separated")
    parser.add_argument("--budgets", default="24", help="knowledge budgets (links), or none")
    parser.add_argument("--size", type=int, default=8, help="links per map per neighbour")
    parser.add_argument("--max-distance", type=int, default=2)
    parser.add_argument("--hints", type=int, default=3, help="via hints per card")
    parser.add_argument("--fresh", action="store_true", help="a fresh draw every refresh")
    parser.add_argument("--pairs", type=int, default=1000, help="sampled pairs per seed")
    parser.add_argument("--no-full-map", action="store_true", help="skip the ceiling columns")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "tests" / "core"))
    from map_simulation import Policy, simulate, simulate_with_receipts

    header = (
        f"{'nodes':>5} {'deg':>5} {'budget':>6} {'max kn':>6} {'mean kn':>7}"
        f" {'h1':>5} {'h2':>5} {'h3':>5} {'full h2':>7} {'full h3':>7} {'rounds':>6} {'choice':>9}"
    )
    print(header)
    print("-" * len(header))
    for degree in [float(text) for text in args.degrees.split(",")]:
        for budget in [parse_budget(text) for text in args.budgets.split(",")]:
            policy = Policy(
                size=args.size,
                knowledge_budget=budget,
                max_distance=args.max_distance,
                epoch_rounds=None if args.fresh else Policy().epoch_rounds,
                hints=args.hints,
            )
            results = [
                simulate(
                    args.nodes,
                    degree,
                    seed,
                    policy=policy,
                    pairs=args.pairs,
                    full_map_hops=() if args.no_full_map else (2, 3),
                )
                for seed in range(1, args.seeds + 1)
            ]
            print(row(args.nodes, budget, results), flush=True)
            reach = [
                simulate_with_receipts(args.nodes, degree, seed, policy=policy, at_least=(2,))
                for seed in range(1, args.seeds + 1)
            ]
            share = [outcome.routable_at_least[2] for outcome in reach]
            print(
                f"{'':>5} after receipts (recipient's reach, 2 to 4 relays): routable "
                f"mean {percent(mean(share))}, min {percent(min(share))}",
                flush=True,
            )


if __name__ == "__main__":
    main()
