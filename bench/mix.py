"""The request mix: distinct lookups over random groups, each with a key granted that group.

~98 % unique, ~1 % ambiguous, ~1 % none. A `none` asks for a provider id that exists, but
in another account group: it checks the scoping as well as the miss.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench.dataset import Manifest, provider_id

AMBIGUOUS_SHARE = 0.01
NONE_SHARE = 0.01


@dataclass(frozen=True)
class Lookup:
    path: str
    key: str
    kind: str  # expected resolution: "unique" | "ambiguous" | "none"


def lookup_path(group_id: str, provider: str) -> str:
    return f"/v1/accounts/{group_id}/prospects/by-provider-id/{quote(provider, safe='')}"


def keys_by_group(manifest: Manifest) -> dict[int, list[str]]:
    granted: dict[int, list[str]] = {}
    for key in manifest.keys:
        for group in key.groups:
            granted.setdefault(group, []).append(key.key)
    return granted


def _provider(manifest: Manifest, kind: str, group: int, rng: random.Random) -> str:
    spec = manifest.spec
    if kind == "ambiguous":
        return provider_id(spec.seed, group, rng.randrange(spec.ambiguous_ids))
    first_unique = spec.ambiguous_ids
    index = rng.randrange(first_unique, first_unique + spec.unique_ids)
    if kind == "unique":
        return provider_id(spec.seed, group, index)
    if spec.groups == 1:
        return f"crm-missing-{index}"
    other = (group + 1 + rng.randrange(spec.groups - 1)) % spec.groups
    return provider_id(spec.seed, other, index)


def build_mix(manifest: Manifest, count: int, seed: int = 7) -> list[Lookup]:
    """`count` lookups, distinct as long as the dataset has enough distinct candidates (a
    tiny dataset has few ambiguous ids: repeats are then allowed rather than looping)."""
    rng = random.Random(seed)
    granted = keys_by_group(manifest)
    groups = sorted(granted)
    ambiguous = max(1, round(count * AMBIGUOUS_SHARE))
    none = max(1, round(count * NONE_SHARE))
    kinds = ["ambiguous"] * ambiguous + ["none"] * none + ["unique"] * (count - ambiguous - none)
    rng.shuffle(kinds)
    seen: set[tuple[str, str]] = set()
    mix: list[Lookup] = []
    for kind in kinds:
        for _attempt in range(20):
            group = rng.choice(groups)
            path = lookup_path(manifest.group_ids[group], _provider(manifest, kind, group, rng))
            key = rng.choice(granted[group])
            if (path, key) not in seen:
                break
        seen.add((path, key))
        mix.append(Lookup(path, key, kind))
    return mix


def write_mix(mix: list[Lookup], path: Path) -> None:
    """One `path<TAB>key` line per request, read by bench/wrk/mix.lua and bench.openloop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="ascii") as out:
        out.writelines(f"{item.path}\t{item.key}\n" for item in mix)
