"""Experiments: the latency of ``assign`` through a real web server, and how the allocation policies decide.

    python -m bench.experiments [--rps 100] [--duration 60s] [--runs 40] [--parallel 4]

1. Latency. Migrates the configured database (an empty one is fine), makes an organization on
   Enterprise with a running three-arm experiment, starts gunicorn as deployed (2 processes x 4
   threads, ``platform/config/gunicorn.py``) and calls ``GET /api/v1/experiments/{id}/assign`` open
   loop at ``--rps`` for ``--duration``: requests leave on schedule whether or not earlier ones have
   answered, so a slow server shows as latency instead of as a lower rate. 70% of the calls are new
   units (an exposure is inserted), 30% repeat an earlier unit (sticky: the stored arm is read back).
   Latency is measured from the scheduled send time. Its Redis keys (cache, rate limits) get a prefix
   of their own. Afterwards it checks that every unit has exactly one exposure (exit status 1 if not),
   and prints the web processes' CPU time per call: on a machine shared with other work latency
   depends on the neighbours, CPU per call does not (cores / CPU per call = the calls per second the
   web can carry at most).

2. Policies (``--runs`` experiments per policy, ``--parallel`` at a time), through the same server: arms
   with known conversion rates (2.0%, 2.4%, 3.0%), each experiment made and started through the API. Per
   batch of ``--batch`` new units: one bulk assignment (``POST /api/v1/experiments/{id}/assignments``),
   each unit converts at its arm's true rate, the conversions go in as purchase events through the event
   ingest (``POST /api/v1/events/``), then the review the beat runs (``services.review_experiment``, what
   ``experiments.review_running`` calls for every running experiment): adaptive reweighting and the stop
   rule (95% probability to be best once each arm has ``--min-exposures``, or ``--max-exposures``).
   Until the review concludes the experiment; its winner is the declared winner. Regret is the
   conversion rate given up against always showing the best arm, summed over the units assigned.
   Both policies run the same seeds (paired). It checks that every conversion sent was recorded as an
   outcome exactly once (exit status 1 if not).

   Why ``--runs 40``: a decision takes ~10,000 exposures, so a run is ~20 batches; 40 runs per policy
   put the correct-winner rate's standard error at ~0.03 around 0.97 (20 runs: ~0.04, where one wrong
   run moves it by 0.05), and the regret ratio's paired spread at about +-0.05; 80 experiments through
   HTTP take minutes on this machine, 4 at a time (a 2x4 gunicorn has threads to spare for four).

The last lines:

    adaptive_correct_winner_rate: <share of runs where adaptive declared the true best arm>
    adaptive_regret_vs_fixed: <adaptive regret / fixed regret over the same runs>
    assign_p99_ms: <p99 latency of assign at --rps>
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench.load import bench_environment, parse_duration, setup_django

TRUE_RATES = (0.020, 0.024, 0.030)
#: New units in the latency run; the rest repeat an earlier unit.
NEW_UNIT_SHARE = 0.7
#: Calls per minute one Enterprise key may make (the plan's per-key limit is 3,000): keys are added to
#: stay under it with room, so the benchmark measures assignment and not the rate limiter's 429s.
CALLS_PER_KEY_PER_MINUTE = 2400
#: Experiments per policy, and how many run at a time (see the module docstring for why).
RUNS, PARALLEL = 40, 4


# --- part 1: latency through gunicorn --------------------------------------------------------------


@dataclass
class Setup:
    experiment_id: str
    keys: list[str]


def prepare(keys: int) -> Setup:
    from accounts.models import User
    from apikeys.services import create_api_key
    from billing.services import assign_plan
    from experiments import services
    from organizations.services import create_organization
    from projects.services import create_project

    stamp = time.strftime("%Y%m%d-%H%M%S")
    owner = User.objects.create_user(email=f"experiments-{stamp}-{secrets.token_hex(3)}@bench.localhost",
                                     password=secrets.token_urlsafe(16))
    organization = create_organization(actor=owner, name=f"Experiments bench {stamp}")
    assign_plan(organization=organization, plan_code="enterprise", reason="bench.experiments organization")
    project = create_project(actor=owner, organization=organization, name="Experiments")
    experiment = services.create_experiment(
        organization=organization, project=project, actor=owner, name="Subject lines", goal_event="click",
        target_url="https://shop.example.com/spring",
        arms=[{"text": "Spring is here."}, {"text": "Fresh bulbs, bright gardens."}, {"text": "Bloom brighter."}],
    )
    services.start_experiment(experiment=experiment, actor=owner)
    secrets_ = [
        create_api_key(actor=owner, organization=organization, name=f"bench key {i + 1}", scope="read").secret
        for i in range(keys)
    ]
    return Setup(str(experiment.pk), secrets_)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def drive(base_url: str, setup: Setup, rps: float, duration: float) -> tuple[list[float], Counter[int], float]:
    """Open-loop GETs of assign; (latencies in ms from the scheduled send, status counts, achieved rate)."""
    import requests

    local = threading.local()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    url = f"{base_url}/api/v1/experiments/{setup.experiment_id}/assign"
    rng = np.random.default_rng(7)
    total = int(rps * duration)
    units: list[str] = []
    plan = []
    for _ in range(total):
        if not units or rng.random() < NEW_UNIT_SHARE:
            units.append(f"visitor-{uuid.uuid4().hex[:12]}")
            plan.append(units[-1])
        else:
            plan.append(units[int(rng.integers(len(units)))])

    def call(n: int, due: float) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        key = setup.keys[n % len(setup.keys)]
        try:
            status = session.get(url, params={"unit": plan[n]}, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30).status_code
        except requests.RequestException as exc:  # counted under 0, and named once in the log
            status = 0
            print(f"request failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        elapsed = (time.perf_counter() - due) * 1000
        with lock:
            latencies.append(elapsed)
            statuses[status] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=64) as pool:
        for n in range(total):
            due = started + n / rps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(call, n, due)
    achieved = total / (time.perf_counter() - started)
    return latencies, statuses, achieved


def server_cpu_s(master_pid: int) -> float:
    """CPU seconds (user + system) the gunicorn master and its workers have used, from /proc (Linux).

    Latency on a shared machine depends on what else runs; CPU per call does not, and says how many
    calls per second the web processes can carry: cores / (CPU seconds per call).
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry) == master_pid or ppid == master_pid:
            total += (utime + stime) / tick
    return total


def latency_run(args: argparse.Namespace, web: Any) -> float:
    from experiments.models import Assignment

    keys = max(1, int(np.ceil(args.rps * 60 / CALLS_PER_KEY_PER_MINUTE)))
    setup = prepare(keys)
    drive(web.base_url, setup, min(args.rps, 20.0), 2.0)  # warm: connections, imports, the cache
    assert web.process is not None
    cpu_before, load_before = server_cpu_s(web.process.pid), os.getloadavg()[0]
    client_before = time.process_time()
    latencies, statuses, achieved = drive(web.base_url, setup, args.rps, args.duration)
    cpu_per_call_ms = (server_cpu_s(web.process.pid) - cpu_before) * 1000 / max(len(latencies), 1)
    client_per_call_ms = (time.process_time() - client_before) * 1000 / max(len(latencies), 1)
    load_after = os.getloadavg()[0]
    exposures = Assignment.objects.filter(experiment_id=setup.experiment_id)
    units = exposures.values("unit").distinct().count()
    print(f"assign: {len(latencies)} calls at {achieved:.1f}/s (target {args.rps:g}/s) over {args.duration:g} s, "
          f"{args.web_workers}x{args.web_threads} gunicorn, {keys} read key(s)")
    failed = len(latencies) - statuses.get(200, 0)
    print(f"status codes: {dict(sorted(statuses.items()))} (0: no answer); "
          f"errors {failed / max(len(latencies), 1):.2%}")
    print(f"latency ms: p50 {percentile(latencies, 50):.1f}  p95 {percentile(latencies, 95):.1f}  "
          f"p99 {percentile(latencies, 99):.1f}  max {max(latencies, default=float('nan')):.1f}")
    print(f"web CPU per call: {cpu_per_call_ms:.1f} ms (gunicorn master and workers, user + system); "
          f"this load generator's: {client_per_call_ms:.1f} ms; "
          f"machine load average {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} CPUs)")
    print(f"exposures: {exposures.count()} for {units} units (sticky: one each)")
    if exposures.count() != units:
        print("FAILED: a unit has more than one exposure")
        sys.exit(1)
    return percentile(latencies, 99)


# --- part 2: the policies, through the API --------------------------------------------------------


@dataclass
class Outcome:
    winner: int
    exposures: int
    regret: float
    conversions: int


@dataclass
class Api:
    base_url: str
    project_id: str
    #: Write keys (the ingest needs one), used in turn so no key nears its per-minute limit.
    keys: list[str]


SKU = "bench-bulbs"


def policy_setup(keys: int) -> tuple[str, list[str]]:
    """The policies' organization: Enterprise (no cap on running experiments), a project and write keys."""
    from accounts.models import User
    from apikeys.services import create_api_key
    from billing.services import assign_plan
    from organizations.services import create_organization
    from projects.services import create_project

    stamp = time.strftime("%Y%m%d-%H%M%S")
    owner = User.objects.create_user(email=f"policies-{stamp}-{secrets.token_hex(3)}@bench.localhost",
                                     password=secrets.token_urlsafe(16))
    organization = create_organization(actor=owner, name=f"Experiment policies bench {stamp}")
    assign_plan(organization=organization, plan_code="enterprise", reason="bench.experiments policies")
    project = create_project(actor=owner, organization=organization, name="Policies")
    secrets_ = [
        create_api_key(actor=owner, organization=organization, name=f"policy key {i + 1}", scope="write").secret
        for i in range(keys)
    ]
    return str(project.pk), secrets_


def _call(session: Any, method: str, url: str, key: str, body: dict[str, Any]) -> Any:
    response = session.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return response.json()


def run_policy(api: Api, policy: str, seed: int, args: argparse.Namespace) -> Outcome:
    """One experiment through the API until its stop rule concludes it.

    Per batch of ``--batch`` new units: bulk assignment (``POST .../assignments``, without tracking links:
    outcomes go in as events), each unit converts at its
    arm's true rate, the conversions go in as purchase events (``POST /api/v1/events/``), then the review
    beat runs for it (``services.review_experiment``, what ``experiments.review_running`` runs per experiment).
    """
    import requests

    from experiments import services
    from experiments.models import Experiment, Status

    rng = np.random.default_rng(seed)
    best = max(TRUE_RATES)
    session = requests.Session()
    key = api.keys[seed % len(api.keys)]
    created = _call(session, "POST", f"{api.base_url}/api/v1/experiments/", key, {
        "project": api.project_id, "name": f"{policy} {seed}", "goal_event": "purchase", "policy": policy,
        "min_share": args.min_share, "stop_probability": args.stop_probability,
        "min_exposures": args.min_exposures, "max_exposures": args.max_exposures,
        "arms": [{"label": chr(65 + i), "text": f"Copy converting at {rate:.1%}."}
                 for i, rate in enumerate(TRUE_RATES)],
    })
    experiment_id = created["id"]
    rate_of = {chr(65 + i): rate for i, rate in enumerate(TRUE_RATES)}
    _call(session, "POST", f"{api.base_url}/api/v1/experiments/{experiment_id}/start", key, {})
    regret, served, converted, batch = 0.0, 0, 0, 0
    while True:
        units = [f"{policy}-{seed}-{batch}-{n}" for n in range(args.batch)]
        batch += 1
        events = []
        for page in range(0, len(units), MAX_BULK_REQUEST):
            answer = _call(session, "POST", f"{api.base_url}/api/v1/experiments/{experiment_id}/assignments", key,
                           {"units": units[page:page + MAX_BULK_REQUEST], "links": False})
            for row in answer["assignments"]:
                rate = rate_of[row["arm"]]
                regret += best - rate
                served += 1
                if rng.random() < rate:
                    events.append({"event_id": f"{experiment_id}:{row['unit']}", "customer": row["unit"],
                                   "sku": SKU, "type": "purchase",
                                   "timestamp": datetime.now(UTC).isoformat(timespec="microseconds")})
        if events:
            converted += len(events)
            _call(session, "POST", f"{api.base_url}/api/v1/events/", key,
                  {"project": api.project_id, "events": events})
        experiment = services.review_experiment(Experiment.objects.get(pk=experiment_id))
        if experiment.status == Status.CONCLUDED:
            labels = [arm.label for arm in experiment.arms.order_by("position")]
            assert experiment.winner is not None
            return Outcome(labels.index(experiment.winner.label), served, regret, converted)


#: Units per bulk request the benchmark sends (the API's cap); a larger ``--batch`` is several requests.
MAX_BULK_REQUEST = 1000


def policy_runs(base_url: str, args: argparse.Namespace) -> tuple[float, float]:
    import requests
    from django.db import connection

    from experiments.models import Outcome as Recorded

    project_id, keys = policy_setup(max(1, args.parallel))
    api = Api(base_url, project_id, keys)
    _call(requests.Session(), "POST", f"{base_url}/api/v1/events/", keys[0],
          {"project": project_id, "events": [], "items": [{"sku": SKU, "title": "Tulip bulbs"}]})
    best = int(np.argmax(TRUE_RATES))

    def one(job: tuple[str, int]) -> Outcome:
        try:
            return run_policy(api, job[0], job[1], args)
        finally:
            connection.close()  # this thread's database connection (the review)

    # Each policy sees the same seeds (the same conversion draws in order): a paired comparison.
    jobs = [(policy, 1000 + run) for run in range(args.runs) for policy in ("fixed", "adaptive")]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        outcomes = list(pool.map(one, jobs))
    elapsed = time.perf_counter() - started
    results: dict[str, list[Outcome]] = {"fixed": [], "adaptive": []}
    for (policy, _), outcome in zip(jobs, outcomes, strict=True):
        results[policy].append(outcome)
    sent = sum(o.conversions for o in outcomes)
    recorded = Recorded.objects.filter(experiment__project_id=project_id).count()
    print(f"policies: true rates {', '.join(f'{r:.1%}' for r in TRUE_RATES)}; {args.runs} runs each through the API "
          f"({args.parallel} experiments at a time, {elapsed:.0f} s), batches of {args.batch} units (bulk assign, "
          f"purchase events, review), stop at {args.stop_probability:.0%} (>= {args.min_exposures} per arm) or "
          f"{args.max_exposures:,} exposures; adaptive floor {args.min_share:g}")
    print(f"conversions: {sent:,} sent as events, {recorded:,} recorded as outcomes")
    print(f"{'policy':<10}{'correct':>9}{'exposures (median)':>20}{'regret (mean)':>15}")
    for policy, runs in results.items():
        correct = sum(r.winner == best for r in runs) / len(runs)
        print(f"{policy:<10}{correct:>9.0%}{statistics.median(r.exposures for r in runs):>20,.0f}"
              f"{statistics.mean(r.regret for r in runs):>15.1f}")
    if recorded != sent:
        print("FAILED: a conversion sent as an event was not recorded as an outcome (or one was recorded twice)")
        sys.exit(1)
    adaptive_correct = sum(r.winner == best for r in results["adaptive"]) / args.runs
    ratio = sum(r.regret for r in results["adaptive"]) / max(sum(r.regret for r in results["fixed"]), 1e-9)
    return adaptive_correct, ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=100.0, help="assign calls per second")
    parser.add_argument("--duration", type=parse_duration, default=parse_duration("60s"), help="e.g. 20s, 2m")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--runs", type=int, default=RUNS, help="experiments per policy through the API (0: none)")
    parser.add_argument("--parallel", type=int, default=PARALLEL, help="experiments running at a time")
    parser.add_argument("--batch", type=int, default=500, help="units between two reviews")
    parser.add_argument("--stop-probability", type=float, default=0.95)
    parser.add_argument("--min-exposures", type=int, default=1000)
    parser.add_argument("--max-exposures", type=int, default=200_000)
    parser.add_argument("--min-share", type=float, default=0.1)
    args = parser.parse_args(argv)

    run_id = uuid.uuid4().hex[:8]
    setup_django(bench_environment(run_id, 0.0, {"LOG_LEVEL": "WARNING"}))
    from django.core.management import call_command

    from bench import harness

    call_command("migrate", verbosity=0)
    web = harness.WebServer(dict(os.environ), workers=args.web_workers, threads=args.web_threads, name="web",
                            log_path=harness.VAR_DIR / "bench-experiments-web.log", timeout=90)
    web.start()
    try:
        p99 = latency_run(args, web)
        if args.runs:
            correct, ratio = policy_runs(web.base_url, args)
    finally:
        web.stop()
    if args.runs:
        print(f"adaptive_correct_winner_rate: {correct:.2f}")
        print(f"adaptive_regret_vs_fixed: {ratio:.2f}")
    print(f"assign_p99_ms: {p99:.1f}")


if __name__ == "__main__":
    main()
