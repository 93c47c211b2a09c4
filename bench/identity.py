"""Before timing: the service and the baseline must give the same answers.

A ratio between two servers means something only if they do the same work. For a sample of
requests (every resolution, each kind of 401, both 403s, the 422s and the order of checks)
the status, the body bytes with the trace id blanked, and the headers must match, except
`date`, the rate-limit headers (the baseline has no limiter) and the trace id's value. Each
answer is also checked against what the dataset says it must be, so a broken dataset or a
service regression stops the run instead of producing numbers.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass

from bench.dataset import Manifest, provider_id
from bench.mix import keys_by_group, lookup_path
from bench.procs import HarnessError
from bench.servers import Server
from sonarly_api.auth.keys import generate_key

IGNORED_HEADERS = frozenset(
    {"date", "x-trace-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
)
_TRACE = re.compile(rb'"traceId":"([0-9a-f]{32})"')


@dataclass(frozen=True)
class Probe:
    label: str
    path: str
    authorization: str | None
    status: int
    expect: str  # the resolution for a 200, the error code otherwise


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


def probes(manifest: Manifest) -> list[Probe]:
    spec = manifest.spec
    granted = keys_by_group(manifest)
    group = min(granted)
    gid = manifest.group_ids[group]
    key = granted[group][0]
    bearer = f"Bearer {key}"
    unique = provider_id(spec.seed, group, spec.ambiguous_ids)
    ambiguous = provider_id(spec.seed, group, 0)
    elsewhere = provider_id(spec.seed, (group + 1) % spec.groups, spec.ambiguous_ids)
    bad_checksum = key[:-1] + ("A" if key[-1] != "A" else "B")
    found = [
        Probe("unique", lookup_path(gid, unique), bearer, 200, "unique"),
        Probe(
            "unique, upper-case group id", lookup_path(gid.upper(), unique), bearer, 200, "unique"
        ),
        Probe("ambiguous", lookup_path(gid, ambiguous), bearer, 200, "ambiguous"),
        Probe(
            "none (id of another group)",
            lookup_path(gid, elsewhere),
            bearer,
            200,
            "none" if spec.groups > 1 else "unique",
        ),
        Probe("none, non-ASCII id", lookup_path(gid, "crm-é✓"), bearer, 200, "none"),
        Probe("401 no header", lookup_path(gid, unique), None, 401, "UNAUTHORIZED"),
        Probe(
            "401 not Bearer", lookup_path(gid, unique), "Basic Zm9vOmJhcg==", 401, "UNAUTHORIZED"
        ),
        Probe(
            "401 malformed key",
            lookup_path(gid, unique),
            "Bearer sk_live_short",
            401,
            "UNAUTHORIZED",
        ),
        Probe(
            "401 bad checksum",
            lookup_path(gid, unique),
            f"Bearer {bad_checksum}",
            401,
            "UNAUTHORIZED",
        ),
        Probe(
            "401 unknown key",
            lookup_path(gid, unique),
            f"Bearer {generate_key()}",
            401,
            "UNAUTHORIZED",
        ),
        Probe("401 before 422", lookup_path("nope", unique), None, 401, "UNAUTHORIZED"),
        Probe(
            "403 no prospects:read",
            lookup_path(gid, unique),
            f"Bearer {manifest.denied_key}",
            403,
            "PERMISSION_DENIED",
        ),
        Probe(
            "403 permission before 422",
            lookup_path("nope", unique),
            f"Bearer {manifest.denied_key}",
            403,
            "PERMISSION_DENIED",
        ),
        Probe("422 group id", lookup_path("not-an-id", unique), bearer, 422, "VALIDATION_ERROR"),
        Probe(
            "422 %2F in provider id",
            f"/v1/accounts/{gid}/prospects/by-provider-id/a%2Fb",
            bearer,
            422,
            "VALIDATION_ERROR",
        ),
        Probe("422 whitespace", lookup_path(gid, "a b"), bearer, 422, "VALIDATION_ERROR"),
        Probe("422 too long", lookup_path(gid, "x" * 257), bearer, 422, "VALIDATION_ERROR"),
        Probe(
            "422 empty provider id",
            f"/v1/accounts/{gid}/prospects/by-provider-id/",
            bearer,
            422,
            "VALIDATION_ERROR",
        ),
    ]
    other = next((g for g in range(spec.groups) if key not in granted.get(g, [])), None)
    if other is not None:
        found.append(
            Probe(
                "403 group not granted",
                lookup_path(manifest.group_ids[other], unique),
                bearer,
                403,
                "ACCOUNT_GROUP_FORBIDDEN",
            )
        )
        found.append(
            Probe(
                "422 before group 403",
                lookup_path(manifest.group_ids[other], "a b"),
                bearer,
                422,
                "VALIDATION_ERROR",
            )
        )
    return found


def fetch(server: Server, probe: Probe) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {} if probe.authorization is None else {"Authorization": probe.authorization}
        # http.client sends the path as given: %2F stays encoded, as a client would send it.
        conn.request("GET", probe.path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        names = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, body, names)
    finally:
        conn.close()


def _problems(probe: Probe, answer: Answer) -> list[str]:
    """What is wrong with one server's answer on its own."""
    problems = []
    trace = _TRACE.search(answer.body)
    if trace is None or answer.headers.get("x-trace-id") != trace[1].decode():
        problems.append("X-Trace-Id missing or different from the body's traceId")
    if answer.status != probe.status:
        problems.append(f"status {answer.status}, expected {probe.status}")
        return problems
    document = json.loads(answer.body)
    got = document["data"]["resolution"] if probe.status == 200 else document["error"]["code"]
    if got != probe.expect:
        problems.append(f"answered {got}, expected {probe.expect}")
    return problems


def check(service: Server, baseline: Server, manifest: Manifest) -> int:
    """Raises HarnessError listing every difference; returns the number of probes."""
    failures: list[str] = []
    all_probes = probes(manifest)
    for probe in all_probes:
        answers = {server.name: fetch(server, probe) for server in (service, baseline)}
        for name, answer in answers.items():
            failures += [f"{probe.label}: {name}: {p}" for p in _problems(probe, answer)]
        first, second = answers["service"], answers["baseline"]
        if first.status != second.status:
            failures.append(f"{probe.label}: status {first.status} vs {second.status}")
        blank = b'"traceId":"-"'
        if _TRACE.sub(blank, first.body) != _TRACE.sub(blank, second.body):
            failures.append(f"{probe.label}: bodies differ:\n  {first.body!r}\n  {second.body!r}")
        kept = [
            {k: v for k, v in a.headers.items() if k not in IGNORED_HEADERS}
            for a in (first, second)
        ]
        if kept[0] != kept[1]:
            failures.append(f"{probe.label}: headers differ: {kept[0]} vs {kept[1]}")
    if failures:
        raise HarnessError(
            "the service and the baseline do not answer alike (fix the baseline, or the "
            "service if it broke the contract):\n" + "\n".join(failures)
        )
    return len(all_probes)
