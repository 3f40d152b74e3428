"""One local Ray + Serve for live experiments: deploy edgeserving (any policy) and the plain baseline,
replay a trace against either, scrape ``/metrics``, shut down cleanly.

``edgeserving demo``, ``bench live``, ``bench fidelity`` and the live replay test all go through
this class, so they deploy the same way: ``ray_config.yaml`` (through ``scheduler.serving.deploy``,
with the demo zoo's cached copy when the committed one is missing), one application per
configuration on one Serve instance, each on its own route prefix:

- ``deploy_edgeserving(name, policy)``: the config's worker app with ``policy`` (and any other
  worker args), at ``/`` for the first one and ``/<name>`` after; deploying a known name again
  redeploys it with the new args.
- ``deploy_plain(batching)``: ``bench.plain_batched`` (one app per model, fractional ``num_gpus``,
  ``@serve.batch``, the default router) at ``/plain``; ``set_plain_batching`` retunes it live. With
  ``executor: profile`` (``bench live --emulate``) the plain models run on one shared emulated device
  (``bench.emulated_device``) instead of torch.

``worker_args`` (constructor, or ``override_worker_args`` later) replaces worker settings of the
config for every deployment after it, e.g. the profile executor and a dilated profile.

``ingress="direct"`` turns on Serve's direct ingress (``scheduler.serving.ingress``) and points every
target at its replicas' own HTTP ports, the plain models' included, so both sides skip the proxy hop
alike; ``"proxy"`` (default) goes through Serve's HTTP proxy as a default deployment does.

Resources: every edgeserving app is one worker replica holding one logical GPU (as in
``ray_config.yaml``); the plain models share one GPU. ``gpus`` logical GPUs are declared, so
configurations compared side by side each have "one GPU"; only one is replayed at a time, the
others idle (their engine threads block while their queues are empty). Logical CPU shares are
Ray bookkeeping only (nothing is pinned): 0.5 per worker, 0.25 per plain model.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.plain_batched import Batching

WORKER_CPUS = 0.5  # logical CPU share of an edgeserving worker replica here (ray_config.yaml says 1)
PLAIN_CPUS = 0.25  # logical CPU share of one plain model replica
PLAIN_PREFIX = "/plain"

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Something a trace can be replayed against."""

    label: str  # names the configuration in summaries ("edgeserving", "lookahead", "plain Ray Serve")
    kind: str  # "edgeserving" or "plain"
    url: str  # base URL: GET {url}/v1/models, POST {url}{path}
    app: str  # Serve application name (plain: the catalog app)
    paths: dict[str, str] = field(default_factory=dict)  # model -> POST path; empty: /v1/infer
    via_proxy: bool = False  # with direct ingress on: still reached through the proxy (an A/B of the two paths)
    propagate_deadlines: bool | None = None  # send X-Request-Sent-At; None: as the harness says

    @property
    def metrics_url(self) -> str | None:
        return f"{self.url}/metrics" if self.kind == "edgeserving" else None


def add_ingress_argument(p: Any, default: str = "proxy") -> None:
    from scheduler.serving.ingress import INGRESS_MODES

    p.add_argument("--ingress", choices=INGRESS_MODES, default=default,
                   help=f"how requests reach the replicas: through Serve's HTTP proxy or straight to each replica's "
                        f"own HTTP port (Serve's direct ingress), for every configuration alike (default {default})")


def add_propagation_argument(p: Any) -> None:
    p.add_argument("--propagate-deadlines", action="store_true",
                   help="every request carries its send time (header X-Request-Sent-At), so edgeserving's workers "
                        "count deadlines from the client's send instead of their own receipt (plain Ray Serve "
                        "ignores it)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveHarness:
    """Context manager: ``with LiveHarness(gpus=3) as h: t = h.deploy_edgeserving("edgeserving", ...)``."""

    def __init__(self, config_path: str | Path | None = None, *, gpus: int = 1, cpus: int = 2,
                 port: int | None = None, log: Log | None = None, worker_args: dict[str, Any] | None = None,
                 ingress: str = "proxy", propagate_deadlines: bool = False, samples_per_call: int = 1) -> None:
        from scheduler.serving import deploy
        from scheduler.serving.ingress import INGRESS_MODES

        if ingress not in INGRESS_MODES:
            raise ValueError(f"ingress must be one of {', '.join(INGRESS_MODES)}, got {ingress!r}")
        self.ingress = ingress
        self.propagate_deadlines = propagate_deadlines  # every replay sends X-Request-Sent-At
        if not (isinstance(samples_per_call, int) and samples_per_call >= 1):
            raise ValueError(f"samples_per_call must be an int >= 1, got {samples_per_call!r}")
        self.samples_per_call = samples_per_call  # every replay sends each row as one call of this many samples

        self.config_path = Path(config_path) if config_path else deploy.DEFAULT_CONFIG
        self.gpus = gpus
        self.cpus = cpus
        self.port = port or free_port()
        self.log = log or (lambda _msg: None)
        self.tmp: Path | None = None
        self.apps: dict[str, dict[str, Any]] = {}  # Serve application name -> its config entry
        self.targets: dict[str, Target] = {}
        self.started = False
        self._base: dict[str, Any] | None = None
        self._plain_batching: Batching | None = None
        self.overrides: dict[str, Any] = dict(worker_args or {})  # worker settings over the config's
        self.device: Any = None  # the plain models' emulated device (an actor handle), when there is one

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> LiveHarness:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self) -> None:
        """A fresh local Ray (own temp dir, ``gpus`` logical GPUs) with the config prepared."""
        from scheduler.serving import deploy, ingress

        base = deploy.prepare(deploy.load_serve_config(self.config_path), host="127.0.0.1", port=self.port,
                              num_replicas=1, args=self.overrides or None, base_dir=self.config_path.resolve().parent,
                              demo_zoo=self.log)
        self._base = base
        # Short path: Ray's socket paths must stay under 107 bytes.
        self.tmp = Path(tempfile.mkdtemp(prefix="es-live-"))
        self.started = True  # from here on shutdown() has something to undo
        try:
            if self.ingress == "direct":
                ingress.enable()
            deploy.start_ray(num_gpus=self.gpus, num_cpus=self.cpus, temp_dir=self.tmp / "ray")
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        """Stop Serve and Ray and remove the temp dir; safe to call twice or after a failed start."""
        from scheduler.serving import deploy, ingress

        if self.started:
            self.device = None
            with contextlib.suppress(Exception):
                deploy.shutdown()
            if self.ingress == "direct":
                ingress.disable()  # the next Ray this process starts decides afresh
            self.started = False
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # -- configuration -----------------------------------------------------------------------------

    @property
    def worker_args(self) -> dict[str, Any]:
        """The worker args of the prepared config (paths resolved to the zoo actually used), overrides applied."""
        from scheduler.serving import deploy

        assert self._base is not None, "start() the harness first"
        return {**deploy.worker_app(self._base)["args"], **self.overrides}

    def override_worker_args(self, args: dict[str, Any]) -> None:
        """Replace worker settings for every deployment from now on (validated here, before any deploy)."""
        from scheduler.serving.config import parse_config
        from scheduler.serving.preflight import preflight

        self.overrides = dict(args)
        preflight(parse_config(self.worker_args, "worker_args"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def deploy_edgeserving(self, name: str, policy: str, label: str | None = None, via_proxy: bool = False,
                           propagate_deadlines: bool | None = None, **args: Any) -> Target:
        """(Re)deploy the config's worker app as application ``name`` with ``policy`` and ``args``
        (``via_proxy``: keep this one on the proxy path when the harness runs direct ingress;
        ``propagate_deadlines``: whether its replays send their send time, None: as the harness says)."""
        from scheduler.serving import deploy

        assert self._base is not None and self.tmp is not None, "start() the harness first"
        app = copy.deepcopy(deploy.worker_app(self._base))
        app["args"] = self.worker_args
        first = not any(t.kind == "edgeserving" for n, t in self.targets.items() if n != name)
        prefix = self.apps[name]["route_prefix"] if name in self.apps else ("/" if first else f"/{name}")
        app.update(name=name, route_prefix=prefix)
        # Another policy's options would not fit this one: a changed policy starts from none.
        keep = app["args"].get("policy_options", {}) if app["args"].get("policy") == policy else {}
        app["args"] = {**app["args"], "policy": policy, "policy_options": keep,
                       "metrics_dir": str(self.tmp / "metrics" / name), **args}
        dep = deploy.worker_deployment(app)
        dep["ray_actor_options"] = {**dep.get("ray_actor_options", {}), "num_cpus": WORKER_CPUS}
        self._check_gpus(extra={name: app})
        self.apps[name] = app
        url = self.base_url + ("" if prefix == "/" else prefix)
        self.targets[name] = Target(label or policy, "edgeserving", url, name, via_proxy=via_proxy,
                                    propagate_deadlines=propagate_deadlines)
        self.log(f"deploying edgeserving app {name!r} (policy {policy}) at {url}")
        self._apply()
        return self.targets[name]

    def deploy_plain(self, batching: Batching, label: str = "plain Ray Serve") -> Target:
        """Deploy (or redeploy) the plain Ray Serve baseline of every model the config serves."""
        from bench import plain_batched
        from scheduler.serving.config import parse_config

        assert self._base is not None, "start() the harness first"
        cfg = parse_config(self.worker_args)
        catalog = self._plain_catalog(cfg)
        if cfg.executor == "torch":
            model_args = {m["name"]: {"checkpoint": str(cfg.checkpoint_path(m["name"])),
                                      "threads": cfg.torch_threads or 1} for m in catalog}
            builder, what = "bench.plain_batched:build_model", "torch"
        else:
            model_args = self._emulated_models(cfg, catalog)
            builder, what = "bench.plain_batched:build_emulated", "one shared emulated device"
        apps = plain_batched.applications(model_args, catalog, batching, PLAIN_PREFIX, cpus=PLAIN_CPUS,
                                          builder=builder)
        new = {a["name"]: a for a in apps}
        self._check_gpus(extra=new)
        # A redeploy (another executor or profile) replaces every earlier plain app.
        self.apps = {n: a for n, a in self.apps.items() if not n.startswith(plain_batched.MODEL_APP_PREFIX)}
        self.apps.update(new)
        target = Target(label, "plain", self.base_url + PLAIN_PREFIX, plain_batched.CATALOG_APP,
                        plain_batched.infer_paths(list(model_args)))
        self.targets["plain"] = target
        self.log(f"deploying plain Ray Serve ({len(model_args)} deployments on {what}, {batching.label()}) "
                 f"at {target.url}")
        self._apply()
        self._plain_batching = batching
        return self.targets["plain"]

    def set_plain_batching(self, batching: Batching) -> None:
        """Retune the plain deployments' ``@serve.batch`` in place (``user_config``: no restart)."""
        from bench.plain_batched import MODEL_APP_PREFIX

        if batching == self._plain_batching:
            return
        for name, app in self.apps.items():
            if name.startswith(MODEL_APP_PREFIX) and "deployments" in app:
                app["deployments"][0]["user_config"] = batching.user_config()
        self.log(f"retuning plain Ray Serve to {batching.label()}")
        self._apply()
        self._plain_batching = batching

    def _plain_catalog(self, cfg: Any) -> list[dict[str, Any]]:
        """The ``/v1/models`` descriptions of the served models (no weights loaded), as the worker gives them."""
        from scheduler.profile import Profile
        from scheduler.serving.catalog import load_catalog
        from scheduler.serving.config import parse_config

        meta_only = parse_config({**self.worker_args, "executor": "profile"})
        catalog, _ = load_catalog(meta_only, Profile.load(cfg.profile_path))
        platform = "pytorch" if cfg.executor == "torch" else "emulated"
        return [{**m.describe(), "platform": platform} for m in catalog.values()]

    def _emulated_models(self, cfg: Any, catalog: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Builder args of the emulated plain models, after starting a fresh shared device for the profile."""
        import ray

        from bench import emulated_device

        if self.device is not None:
            ray.kill(self.device)
        self.device, name = emulated_device.start(str(cfg.profile_path), cfg.seed)
        return {m["name"]: {"model": m["name"], "final_exit": m["exits"][-1], "input_shape": m["input_shape"],
                            "device": name, "namespace": emulated_device.NAMESPACE} for m in catalog}

    def _check_gpus(self, extra: Mapping[str, dict[str, Any]]) -> None:
        apps = {**self.apps, **extra}
        need = sum(1 for a in apps.values() if a.get("import_path", "").startswith("scheduler."))
        need += any(n.startswith("plain-") for n in apps)
        if need > self.gpus:
            raise ValueError(f"{need} configurations side by side need {need} logical GPUs; the harness declared "
                             f"{self.gpus} (LiveHarness(gpus=...))")

    def _apply(self) -> None:
        """Deploy every known app at once (Serve deletes apps missing from the config)."""
        from scheduler.serving import deploy

        assert self._base is not None
        config = {**{k: v for k, v in self._base.items() if k != "applications"},
                  "applications": list(self.apps.values())}
        deploy.deploy(config)
        if "plain" in self.targets:  # deploy() waited for the worker apps' health endpoints
            _wait_catalog(self.base_url + PLAIN_PREFIX)  # through the proxy: a replica's own port may have moved
        if self.ingress == "direct":
            self._point_at_replicas()

    def _point_at_replicas(self) -> None:
        """Every target at its replica's own HTTP port (a redeployed replica gets a new one)."""
        from bench.plain_batched import MODEL_APP_PREFIX
        from scheduler.serving.ingress import replica_urls

        host = self._base["http_options"].get("host", "127.0.0.1") if self._base else "127.0.0.1"

        def url(app: str) -> str:
            return replica_urls(app, self.apps[app].get("route_prefix") or "/", host)[0]

        for key, t in self.targets.items():
            if t.via_proxy:
                continue
            if t.kind == "edgeserving":
                self.targets[key] = dataclasses.replace(t, url=url(t.app))
            else:  # absolute per-model URLs: the replayer posts each model to its own replica
                self.targets[key] = dataclasses.replace(t, url=url(t.app), paths={
                    m: url(f"{MODEL_APP_PREFIX}{m}") + "/v1/infer" for m in t.paths})
        for t in self.targets.values():
            self.log(f"  {t.label}: {'proxy' if t.via_proxy else 'direct ingress'} at {t.url}")

    def current(self, target: Target) -> Target:
        """``target`` as deployed now (with direct ingress a redeploy moves a replica to another port)."""
        return next((t for t in self.targets.values() if t.app == target.app), target)

    # -- measurement -------------------------------------------------------------------------------

    def replay(self, target: Target, rows: Sequence[Any], *, judge: str = "client", grace_ms: float = 2000.0,
               description: str | None = None, **options: Any):
        """Open-loop replay of ``rows`` against ``target`` (a ``workloads.replay.ReplayReport``).

        ``judge="client"`` (default) judges MET/LATE by the client-side latency for every target alike.
        """
        from scheduler.console import progress
        from workloads.replay import areplay_http

        propagate = self.propagates(target)  # the caller's target says; current() only follows its port
        target = self.current(target)
        with progress() as bar:
            task = bar.add_task(description or f"replaying {len(rows)} requests: {target.label}", total=len(rows))

            def on_progress(_sent: int, done: int) -> None:
                bar.update(task, completed=done)

            return asyncio.run(areplay_http(rows, target.url, judge=judge, grace_ms=grace_ms, label=target.label,
                                            paths=self._paths(target), on_progress=on_progress,
                                            propagate_deadlines=propagate,
                                            samples_per_call=self.samples_per_call, **options))

    def _paths(self, target: Target) -> dict[str, str] | None:
        """The POST path per model for ``target``'s replays (None: the replayer's default for the call size)."""
        if target.kind != "plain":
            return target.paths or None
        from bench import plain_batched

        return plain_batched.call_paths(target.paths, self.samples_per_call)

    def propagates(self, target: Target) -> bool:
        """Whether replays against ``target`` send their send time (header X-Request-Sent-At)."""
        return self.propagate_deadlines if target.propagate_deadlines is None else target.propagate_deadlines

    def scrape(self, target: Target) -> dict[str, float]:
        """Every sample of the target's ``/metrics`` as ``name{k=v,...}`` -> value (edgeserving only)."""
        target = self.current(target)
        if target.metrics_url is None:
            raise ValueError(f"{target.label}: the plain baseline exports no edgeserving metrics")
        return scrape_metrics(target.metrics_url)


def _wait_catalog(url: str, timeout_s: float = 60.0) -> None:
    from scheduler.serving.deploy import wait_http_ready

    wait_http_ready(url, timeout_s, path="/v1/models")


def scrape_metrics(metrics_url: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=10.0).text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def metric_total(samples: Mapping[str, float], name: str, **labels: str) -> float:
    """Sum of ``name``'s samples whose labels include ``labels``."""
    want = {f"{k}={v}" for k, v in labels.items()}
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and want <= set(filter(None, rest.rstrip("}").split(","))):
            total += value
    return total


def metric_delta(before: Mapping[str, float], after: Mapping[str, float], name: str, **labels: str) -> float:
    """How much ``name``'s samples with ``labels`` grew between two scrapes (``metric_total`` of each)."""
    return metric_total(after, name, **labels) - metric_total(before, name, **labels)


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process and every descendant (the local Ray
    cluster it started: GCS, raylet, Serve controller, proxy, replicas), by process title, summed over
    processes of one title (``ray::ServeReplica:<app>:<deployment>``, ``ray::ProxyActor``, ...)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()
    mine = {me}
    changed = True
    while changed:  # descendants of this process
        changed = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    out: dict[str, float] = {}
    for pid in mine:
        title = "client (this process)" if pid == me else _title(pid)
        out[title] = out.get(title, 0.0) + cpu.get(pid, 0.0)
    return out


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "gone"
    first = words[0].decode(errors="replace").strip()
    if first.startswith("ray::"):
        return first.split()[0].split(".")[0]  # "ray::ServeReplica:app:Deployment[.method]"
    return first.rsplit("/", 1)[-1] or "unknown"
