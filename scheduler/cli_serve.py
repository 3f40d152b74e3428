"""``edgeserving serve``: start a local Ray, deploy ``ray_config.yaml`` and serve until Ctrl-C.

One worker replica per GPU (``ray_actor_options.num_gpus: 1``); on a machine without a GPU one
logical GPU is declared, so the same config runs everywhere. On Ctrl-C the workers drain (queued
requests end FAILED with reason shutdown, nothing is left unanswered), then Serve and Ray stop.
"""

from __future__ import annotations

import argparse
import json

HELP = "serve the models of ray_config.yaml on a local Ray Serve until Ctrl-C"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="Ray Serve config file (default: ray_config.yaml of the repo)")
    p.add_argument("--host", default=None,
                   help="HTTP bind address (default: the config's, 127.0.0.1); 0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: the config's, 8000)")
    p.add_argument("--replicas", type=int, default=None,
                   help="worker replicas (default: one per visible GPU; without a GPU, 1, or N logical GPUs)")
    p.add_argument("--policy", default=None, help="override the config's scheduling policy (a name, or a spec "
                   "such as lookahead:latency_target=0.5 whose options replace the config's policy_options)")
    p.add_argument("--executor", choices=("torch", "profile"), default=None,
                   help="override the config's executor (profile: serve a profile without weights)")
    p.add_argument("--direct-ingress", action="store_true",
                   help="also serve on each worker replica's own HTTP port (Serve's direct ingress; printed at "
                        "start): skips the proxy hop, and with it the router that spreads work across workers")
    p.add_argument("--json", action="store_true", help="print the final request counts as JSON on exit")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scheduler.clock import RealClock
    from scheduler.console import say, status
    from scheduler.serving import deploy, ingress

    clock = RealClock()
    config_path = Path(args.config) if args.config else deploy.DEFAULT_CONFIG
    raw = deploy.load_serve_config(config_path)
    gpus = deploy.detect_gpus()
    replicas = args.replicas if args.replicas is not None else max(gpus, 1)
    if replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {replicas}")
    if gpus and replicas > gpus:
        raise ValueError(f"--replicas {replicas} exceeds the {gpus} visible GPU(s): a worker owns one GPU")
    overrides: dict = {"executor": args.executor} if args.executor is not None else {}
    if args.policy is not None:
        from scheduler.policies.spec import worker_policy_args

        overrides.update(worker_policy_args(args.policy))  # a spec's options replace the config's policy_options
    config = deploy.prepare(raw, host=args.host, port=args.port, num_replicas=replicas, args=overrides,
                            base_dir=config_path.resolve().parent, demo_zoo=status)
    logical = max(gpus, replicas)
    status(f"starting Ray with {logical} {'GPU(s)' if gpus else 'logical GPU(s) (no GPU visible)'}")
    if args.direct_ingress:
        ingress.enable()
    deploy.start_ray(num_gpus=logical)
    try:
        status(f"deploying {config_path} ({replicas} worker replica(s)); loading the models")
        url = deploy.deploy(config)
        say(f"edgeserving is serving at {url}")
        say(f"  POST {url}/v1/infer   GET {url}/v1/models   GET {url}/metrics   docs: {url}/docs")
        if args.direct_ingress:
            app = deploy.worker_app(config)
            for direct in ingress.replica_urls(deploy.app_name(config), app.get("route_prefix") or "/",
                                               config["http_options"].get("host", "127.0.0.1")):
                say(f"  a worker replica's own port (direct ingress): {direct}")
        say("press Ctrl-C to stop")
        _stop_on_signals()
        try:
            while True:
                clock.sleep(3600)
        except KeyboardInterrupt:
            pass
        status("draining: queued requests end FAILED (shutdown), new ones are refused")
        counts = _request_counts(url)
        deploy.drain(config, num_replicas=replicas)
        counts = _request_counts(url, settle_s=10.0) or counts
    finally:
        status("shutting down Serve and Ray")
        deploy.shutdown()
    if args.json:
        print(json.dumps({"requests": counts}))
    elif counts:
        say("requests by outcome: " + ", ".join(f"{k} {v:g}" for k, v in sorted(counts.items())))
    return 0


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both take the draining path (Ray's driver would exit on SIGTERM without it;
    a shell that started us in the background may have left SIGINT ignored)."""
    import signal

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _request_counts(url: str, settle_s: float = 0.0) -> dict[str, float]:
    """Totals of edgeserving_requests_total by outcome from the live /metrics (empty if unreachable),
    once nothing is in flight (waiting up to ``settle_s`` for the running slots to answer)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from scheduler.clock import RealClock

    clock = RealClock()
    deadline = clock.now() + settle_s
    while True:
        try:
            text = httpx.get(f"{url}/metrics", timeout=5.0).text
        except httpx.HTTPError:
            return {}
        counts: dict[str, float] = {}
        inflight = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "edgeserving_requests_total":
                    counts[s.labels["outcome"]] = counts.get(s.labels["outcome"], 0.0) + s.value
                elif s.name == "edgeserving_inflight_requests":
                    inflight += s.value
        if inflight == 0 or clock.now() >= deadline:
            return counts
        clock.sleep(0.1)
