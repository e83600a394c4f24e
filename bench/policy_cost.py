"""Cost of one quota decision, for hubs of 10, 100 and 1,000 users (pure, in-process).

A decision reads only the deciding user's groups and apps, so its cost should not grow with
the number of users; this measures that claim instead of asserting it. Each user gets 1-3 of
the example policy's groups and 0-3 running apps; every timed call decides for a random user.
"""

from __future__ import annotations

import random
import statistics
import time

from spawner.policy import RunningApp, decide_start, load_policy
from tests.helpers.hub import REPO

GROUPS = ["analysts", "data-scientists", "viewers", "finance", "marketing"]


def measure(users: int, calls: int = 20_000, repeats: int = 5, seed: int = 1) -> dict:
    policy = load_policy(REPO / "hub_config" / "policy.yaml")
    rng = random.Random(seed)
    people = []
    for _i in range(users):
        groups = rng.sample(GROUPS, rng.randint(1, 3))
        running = [RunningApp(f"app{j}", "small") for j in range(rng.randint(0, 3))]
        people.append((groups, running))
    picks = [people[rng.randrange(users)] for _ in range(calls)]
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for groups, running in picks:
            decide_start(policy, groups, running, None, "new")
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
    return {
        "users": users,
        "median_us": statistics.median(per_call),
        "min_us": min(per_call),
        "max_us": max(per_call),
    }


def run() -> list[dict]:
    return [measure(n) for n in (10, 100, 1000)]


if __name__ == "__main__":
    for row in run():
        print(row)
