"""``edgeserving bench live --emulate [PROFILE]``: the live comparison where the device is the bottleneck.

On the 2-core box the torch demo zoo costs 1-5 ms of model time per slot against about 22 ms of CPU
per request in the HTTP path (client, proxy, Ray), so in bursts the machine's CPU saturates before
the "device" does and no scheduler can help. On a real GPU serving ResNets it is the other way
round: the device's slots dominate the latency. This mode emulates that device.

- **Profile**: the seed workload's GPU profile (ResNet-50/101/152 on CIFAR-100,
  ``../shared/profiles/edgeserving_resnet_cifar100.json``) or ``PROFILE``.
- **Time dilation** ``K`` (``--dilation``, default 40): every latency of the profile
  (``bench.sim_suites.scaled_profile``), every deadline, plain Ray Serve's batch wait and the
  client's grace are multiplied by ``K``, and arrival rates divided by ``K`` (they are fractions of
  the dilated device's capacity). The ratios of slot time, deadline and inter-arrival time are the
  undilated ones; the fixed HTTP overhead (10-25 ms) shrinks ``K`` times relative to them, and the
  request rate that loads the device drops to what the box's HTTP path carries comfortably.
- **edgeserving**: the worker with ``executor: profile`` (slot times drawn from the dilated profile
  and slept), Bmax = the profile's largest batch, both policies.
- **plain Ray Serve**: one deployment per model with ``@serve.batch`` as with the zoo, each batch
  holding one shared emulated device (``bench.emulated_device``) for a final-exit slot drawn from
  the same dilated profile by the same sampler.
- **Traces**: seeded Poisson (or ``--process mmpp``) arrivals, models 3:2:1, deadlines 50 ms x K
  (``--deadlines 20,50`` for a mix in equal shares), one trace per load; a load is a fraction of the
  dilated device's capacity as ``bench sim`` defines it (``bench.sim_suites.capacity_rps``: most
  accurate exits, full Bmax batches, profiled mean).

Per load: the side-by-side table, CPU per request, the worker's slot predictions and both live
targets; then issue 6's verdict at the first load where plain Ray Serve violates at least 5% of the
deadlines, and issue 7's live target (target 5) at every load. ``live.md``, ``live.json``, one PNG
and per-request CSVs per load, the dilated profile and the traces land in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.profile import Profile
from workloads.trace import TraceRow

DEFAULT_DILATION = 40.0
DEFAULT_LOADS = (0.6, 0.9, 1.2, 1.5)  # fractions of the dilated device's capacity
LOAD_SECONDS = 30.0
DEADLINES_MS = (50.0,)  # before dilation
PROCESSES = ("poisson", "mmpp")
SEED = 2026
QUICK_LOADS = (0.9, 1.5)
QUICK_SECONDS = 15.0
# The emulated models take no real input: a small placeholder sample keeps request bodies cheap.
INPUT_SHAPE = [8]
NUM_CLASSES = 100  # CIFAR-100
# Plain Ray Serve's @serve.batch settings (MAX_BATCH:WAIT_MS before dilation); batches stop at the profile's
# largest (10 for the seed profile). The default is the grid's best on this mode's traces (BENCHMARKS.md):
# @serve.batch closes a batch on its timer whether or not the shared device is free, so only a long wait
# (half the 50 ms deadline) makes batches big enough for the device to keep up. 25 ms is 1 s after dilation
# by 40, the longest wait allowed here (bench.plain_batched.Batching); --tune-plain skips longer ones.
PLAIN_DEFAULT = "10:25"
PLAIN_GRID = ("1:0", "10:2", "10:5", "10:10", "10:25")
WARMUP_LOAD = 0.3  # warm-up rate as a fraction of capacity


def add_arguments(g: Any) -> None:
    g.add_argument("--emulate", nargs="?", const="", default=None, metavar="PROFILE",
                   help="emulated-device mode: serve PROFILE's models on sleeps of their profiled slot times "
                        "(default profile: the seed workload's GPU ResNet profile, ../shared/profiles/"
                        "edgeserving_resnet_cifar100.json); replaces --trace/--seconds with generated loads; "
                        f"plain batching defaults to {PLAIN_DEFAULT} (--tune-plain: {','.join(PLAIN_GRID)}), "
                        "its waits multiplied by K")
    g.add_argument("--dilation", type=float, default=DEFAULT_DILATION,
                   help=f"multiply every profile latency and deadline by K (default {DEFAULT_DILATION:g})")
    g.add_argument("--loads", default=",".join(f"{x:g}" for x in DEFAULT_LOADS),
                   help="loads as fractions of the dilated device's capacity (default "
                        f"{','.join(f'{x:g}' for x in DEFAULT_LOADS)}; --quick: {','.join(map(str, QUICK_LOADS))})")
    g.add_argument("--load-seconds", type=float, default=None,
                   help=f"trace length per load, s (default {LOAD_SECONDS:g}; --quick: {QUICK_SECONDS:g})")
    g.add_argument("--deadlines", default=",".join(f"{d:g}" for d in DEADLINES_MS),
                   help="deadline classes in ms before dilation, equal shares (default 50; e.g. 20,50)")
    g.add_argument("--process", choices=PROCESSES, default="poisson", help="arrival process (default poisson)")
    g.add_argument("--trace-seed", type=int, default=SEED, help=f"seed of the generated traces (default {SEED})")


@dataclass(frozen=True, slots=True)
class Emulation:
    """A dilated profile and what follows from it: worker settings, capacity, traces."""

    source: str  # the undilated profile's path
    dilation: float
    profile: Profile  # dilated
    weights: dict[str, float]  # model -> share of the arrivals (3:2:1 in profile order)

    @classmethod
    def load(cls, path: str | Path | None, dilation: float) -> Emulation:
        from bench.sim_suites import scaled_profile, seed_weights
        from scheduler.paths import require, seed_profile_path

        if not dilation > 0:
            raise ValueError(f"--dilation must be > 0, got {dilation}")
        source = require(Path(path) if path else seed_profile_path(), "the emulated device's profile")
        profile = scaled_profile(Profile.load(source), dilation)
        return cls(str(source), dilation, profile, dict(seed_weights(profile)))

    @property
    def bmax(self) -> int:
        return self.profile.max_batch()

    def capacity_rps(self) -> float:
        from bench.sim_suites import capacity_rps

        return capacity_rps(self.profile, self.weights, self.bmax)

    def write_profile(self, folder: Path) -> Path:
        path = (folder / f"profile-x{self.dilation:g}.json").resolve()
        path.write_text(json.dumps(self.profile.to_dict(), indent=1))
        return path

    def worker_args(self, profile_path: Path, deadline_ms: float) -> dict[str, Any]:
        """Worker settings over the config's: the profile executor on the dilated profile, no checkpoints."""
        return {"executor": "profile", "profile": str(profile_path), "bmax": self.bmax,
                "max_deadline_ms": max(60_000.0, 4 * deadline_ms),
                "confidence_exit": [],
                "models": {m: {"input_shape": INPUT_SHAPE, "num_classes": NUM_CLASSES,
                               "default_deadline_ms": deadline_ms} for m in self.profile.model_names}}

    def rows(self, load: float, seconds: float, deadlines_ms: Sequence[float], process: str,
             rng: np.random.Generator) -> list[TraceRow]:
        """A trace at ``load`` x capacity: ``process`` arrivals split by the weights, dilated deadlines."""
        from workloads.generators import generate

        total_w = sum(self.weights.values())
        rates = {m: load * self.capacity_rps() * w / total_w for m, w in self.weights.items()}
        mix = [(d * self.dilation, 1.0 / len(deadlines_ms)) for d in deadlines_ms]
        return generate(process, rates, mix, seconds, rng)

    def describe(self) -> str:
        return (f"{Path(self.source).name} x{self.dilation:g} (Bmax {self.bmax}, capacity "
                f"{self.capacity_rps():.2f} req/s at models {':'.join(f'{w:g}' for w in self.weights.values())})")


def dilated_batching(text: str, dilation: float, bmax: int) -> Any:
    """A plain ``@serve.batch`` setting given before dilation, its wait dilated; batches capped at ``bmax``."""
    from bench.plain_batched import Batching

    b = Batching.parse(text)
    if b.max_batch_size > bmax:
        raise ValueError(f"plain batching {text!r}: batches of {b.max_batch_size} exceed the profile's largest "
                         f"({bmax})")
    wait_s = b.batch_wait_timeout_s * dilation
    if wait_s > 1.0:
        raise ValueError(f"plain batching {text!r}: its wait dilated by {dilation:g} is {wait_s:g} s, over the 1 s "
                         "@serve.batch allows here; give a shorter wait (--plain-batching) or a smaller --dilation")
    return Batching(b.max_batch_size, wait_s)


def first_applicable(per_load: Sequence[tuple[float, Any]]) -> tuple[float, Any] | None:
    """The first (load, issue-6 verdict) whose target applies (plain violates >= 5%), in load order."""
    return next(((load, v) for load, v in per_load if v.applies), None)


def parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected numbers separated by commas") from None
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"{what} {text!r}: expected at least one number, all > 0")
    return values


def run(args: argparse.Namespace) -> int:
    from bench.live import _loadavg, deploy_all, plain_settings, policies, replay_all, warmup_rows
    from bench.live_harness import LiveHarness
    from bench.plain_batched import Batching
    from scheduler.console import status
    from workloads.replay import DEFAULT_GRACE_MS
    from workloads.trace import write_trace

    if args.trace is not None or args.seconds is not None:
        raise ValueError("--emulate generates its own traces: use --loads and --load-seconds, not --trace/--seconds")
    reference, best = policies(args)
    emu = Emulation.load(args.emulate or None, args.dilation)
    settings = plain_settings(args, PLAIN_GRID, PLAIN_DEFAULT)
    if args.tune_plain:
        settings = [t for t in settings if Batching.parse(t).batch_wait_timeout_s * emu.dilation <= 1.0]
    grid = [dilated_batching(t, emu.dilation, emu.bmax) for t in settings]
    loads = list(QUICK_LOADS) if args.quick else sorted(parse_floats(args.loads, "--loads"))
    seconds = args.load_seconds or (QUICK_SECONDS if args.quick else LOAD_SECONDS)
    deadlines = parse_floats(args.deadlines, "--deadlines")
    repeats = 1 if args.quick else args.repeats
    segment_s = args.segment_s or None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile_path = emu.write_profile(out)
    traces = {}
    for i, load in enumerate(loads):
        traces[load] = emu.rows(load, seconds, deadlines, args.process, np.random.default_rng(args.trace_seed + i))
        write_trace(out / f"trace-load{load:g}.csv", traces[load])
    t0 = time.perf_counter()
    status(f"bench live --emulate: {emu.describe()}; loads {', '.join(f'{x:g}' for x in loads)} x capacity, "
           f"{seconds:g} s each, {args.process}, deadlines {'/'.join(f'{d * emu.dilation:g}' for d in deadlines)} ms; "
           f"configurations: {reference}, {best}, plain Ray Serve ({', '.join(b.label() for b in grid)}); "
           f"load average {_loadavg()}")
    warm = warmup_rows(emu.weights, WARMUP_LOAD * emu.capacity_rps(), max(deadlines) * emu.dilation, args.warmup_s)
    sections = []
    with LiveHarness(args.config, gpus=3, log=status, ingress=args.ingress,
                     propagate_deadlines=args.propagate_deadlines, samples_per_call=args.samples_per_call,
                     worker_args=emu.worker_args(profile_path, max(deadlines) * emu.dilation)) as h:
        targets = deploy_all(h, reference, best, grid[0])
        for i, load in enumerate(loads):
            rows = traces[load]
            replays = replay_all(h, targets, grid, rows, repeats, warm if i == 0 else [], segment_s, turn=i,
                                 grace_ms=DEFAULT_GRACE_MS * emu.dilation)
            sections.append(_section(emu, load, rows, replays, grid, reference, best, out, repeats))
    result = _report(emu, sections, loads, seconds, deadlines, args, out, time.perf_counter() - t0)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def _section(emu: Emulation, load: float, rows: list, replays: Any, grid: list, reference: str, best: str,
             out: Path, repeats: int) -> dict[str, Any]:
    from bench.live import compare

    rate = len(rows) / max(rows[-1].arrival_s, 1e-9) if rows else 0.0
    title = (f"bench live --emulate, load {load:g} x capacity ({load * emu.capacity_rps():.1f} req/s offered, "
             f"{len(rows)} requests x {repeats} repeat(s), {rate:.1f} req/s in the trace), judged client-side")
    comparison, reports = compare(replays, grid, reference, best, title, out, stem=f"-load{load:g}")
    return {"load": load, "comparison": comparison,
            "json": {"load": load, "offered_rps": load * emu.capacity_rps(), "requests": len(rows),
                     **comparison.to_json(replays, reports)}}


def _report(emu: Emulation, sections: list[dict[str, Any]], loads: list[float], seconds: float,
            deadlines: list[float], args: argparse.Namespace, out: Path, wall_s: float) -> dict[str, Any]:
    from bench.live import _loadavg
    from scheduler.console import say

    plain = [(s["load"], s["comparison"].verdicts[0]) for s in sections]
    ref = [(s["load"], s["comparison"].verdicts[1]) for s in sections]
    first = first_applicable(plain)
    if first is None:
        headline_6 = (f"issue 6 (vs plain Ray Serve): does not apply at any load (plain Ray Serve violates < 5% "
                      f"at {', '.join(f'{x:g}' for x in loads)} x capacity): raise --loads")
    else:
        headline_6 = f"at load {first[0]:g} x capacity, the first where plain violates >= 5%: {first[1].line()}"
    met_7 = [load for load, v in ref if v.met]
    headline_7 = (f"issue 7 (live, vs the reference policy) met at {len(met_7)} of {len(ref)} loads"
                  + (f" ({', '.join(f'{x:g}' for x in met_7)})" if met_7 else ""))
    for line in (headline_6, headline_7):
        say(line)
    setup = (f"emulated device: {emu.describe()}; loads {', '.join(f'{x:g}' for x in loads)} x capacity, "
             f"{seconds:g} s each, {args.process} arrivals, deadlines "
             f"{'/'.join(f'{d:g}' for d in deadlines)} ms x {emu.dilation:g}, trace seed {args.trace_seed}")
    md = [f"{setup}\n", *(s["comparison"].markdown for s in sections),
          f"- {headline_6}\n- {headline_7}\n"]
    (out / "live.md").write_text("\n".join(md))
    result = {"mode": "emulated", "profile": emu.source, "dilation": emu.dilation, "bmax": emu.bmax,
              "capacity_rps": emu.capacity_rps(), "process": args.process, "deadlines_ms": deadlines,
              "load_seconds": seconds, "trace_seed": args.trace_seed, "segment_s": args.segment_s or None,
              "judge": "client", "ingress": args.ingress,
              "propagate_deadlines": args.propagate_deadlines, "samples_per_call": args.samples_per_call,
              "wall_s": wall_s,
              "load_average": _loadavg(), "loads": [s["json"] for s in sections],
              "issue_6": {"load": first[0], **first[1].to_dict()} if first else None,
              "issue_7_met_at": met_7}
    (out / "live.json").write_text(json.dumps(result, indent=2))
    say(f"wrote {out / 'live.md'}, {out / 'live.json'}, live-load*.png and the per-request results in {out} "
        f"({wall_s:.0f} s in all)")
    return result
