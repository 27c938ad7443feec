#!/usr/bin/env python3
"""Turns `parley bench` JSON results into PNG plots and a section of docs/performance.md.

    python3 scripts/bench_report.py [--results results] [--doc docs/performance.md] [--plots docs/plots]

Defaults are relative to the repository root (this script's parent folder), given paths to the
current directory. Reads every *.json of schema "parley-bench/1" in the results folder (others are
skipped with a warning; of several files for one fan-out config or other benchmark the newest
startedAt wins), writes PNG plots and replaces the text between `<!-- bench:begin -->` and
`<!-- bench:end -->` in the doc (appending "## Benchmark suite (issue 5)" with the markers if
missing); nothing outside the markers changes. Without matplotlib it skips the plots.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

SCHEMA = "parley-bench/1"
BENCHMARKS = ("fanout", "joins", "idle", "failover")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SECTION_TITLE = "## Benchmark suite (issue 5)"
ROOT = Path(__file__).resolve().parent.parent
DASH = "–"
FANOUT_TARGET, FANOUT_AIM = 100_000, 400_000
P99_TARGET_MS = 10.0
IDLE_TARGET_BYTES = 16_384
FAILOVER_TARGET_MS = 1000.0

Run = dict[str, Any]


_warned: set[str] = set()


def warn(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"bench_report: {message}", file=sys.stderr)


def num(value: Any) -> float | None:
    """A finite number, or None for null, missing or non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def get(obj: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and 0 <= key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def fmt_int(value: Any) -> str:
    v = num(value)
    return DASH if v is None else f"{round(v):,}"


def fmt_sig(value: Any, unit: str = "") -> str:
    """Three significant digits (0.123, 1.23, 12.3, 123, 1,234) and the unit, or – when unknown."""
    v = num(value)
    if v is None:
        return DASH
    a = abs(v)
    text = f"{round(v):,}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 or a == 0 else f"{v:#.3g}"
    return text + unit


def fmt_g(value: Any) -> str:
    v = num(value)
    return DASH if v is None else f"{v:g}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: Any) -> str:
    text = str(text or "").strip() or "(command not recorded)"
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def steps_of(section: Any) -> list[dict]:
    steps = get(section, "steps")
    return [s if isinstance(s, dict) else {} for s in steps] if isinstance(steps, list) else []


# ---------------------------------------------------------------- loading

def load_results(folder: Path) -> dict[str, list[Run]]:
    found: dict[str, list[Run]] = {b: [] for b in BENCHMARKS}
    for path in sorted(folder.glob("*.json")):
        if not path.is_file():
            continue
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            warn(f"skipping {path.name}: {error}")
            continue
        schema = run.get("schema") if isinstance(run, dict) else None
        if schema != SCHEMA:
            warn(f"skipping {path.name}: schema {schema!r} is not {SCHEMA!r}")
            continue
        bench = run.get("benchmark")
        if bench not in BENCHMARKS or not isinstance(run.get(bench), dict):
            warn(f"skipping {path.name}: benchmark {bench!r} unknown or its {bench!r} object missing")
            continue
        run["_file"] = path.name
        found[bench].append(run)
    return found


def newest_per_key(runs: list[Run], key: Callable[[Run], Any]) -> list[Run]:
    chosen: dict[Any, Run] = {}
    for run in sorted(runs, key=lambda r: (str(r.get("startedAt") or ""), r["_file"])):
        if key(run) in chosen:
            warn(f"{chosen[key(run)]['_file']} is superseded by the newer {run['_file']}")
        chosen[key(run)] = run
    return list(chosen.values())


def config(run: Run) -> tuple[Any, Any]:
    return get(run, "fanout", "meetings"), get(run, "fanout", "participants")


def label(run: Run) -> str:
    m, p = config(run)
    return f"{DASH if num(m) is None else round(num(m))}×{DASH if num(p) is None else round(num(p))}"


def fanout_order(run: Run) -> tuple:
    m, p = (num(v) if num(v) is not None else math.inf for v in config(run))
    return (m > 1, m, p)


def marked_step(run: Run, which: str) -> tuple[int | None, dict | None]:
    """The index and step that fanout.peak / fanout.halfPeak points at (None when null)."""
    index = get(run, "fanout", which, "step")
    steps = steps_of(run["fanout"])
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(steps):
        return index, steps[index]
    if index is not None:
        warn(f"{run['_file']}: fanout.{which}.step {index!r} is not a step index; ignored")
    return None, None


# ---------------------------------------------------------------- targets

def status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def idle_bytes(idle: dict) -> float | None:
    value = num(idle.get("bytesPerConnection"))
    before, after, clients = (num(idle.get(k)) for k in ("rssBeforeBytes", "rssAfterBytes", "clients"))
    if value is None and None not in (before, after, clients) and clients:
        value = (after - before) / clients
    return value


def targets(fanouts: list[Run], joins: Run | None, idle: Run | None, failover: Run | None) -> list[list[str]]:
    rows: list[list[str]] = []
    name = f"fan-out ≥ {FANOUT_TARGET:,} deliveries/s (aim {FANOUT_AIM:,})"
    if not fanouts:
        rows.append([name, DASH, "not run"])
    else:
        peaks = [(label(r), num(get(r, "fanout", "peak", "deliveriesPerSecond"))) for r in fanouts]
        best = max(((v, l) for l, v in peaks if v is not None), default=None)
        others = ", ".join(f"{l}: {fmt_int(v) if v is not None else 'no sustained step'}" for l, v in peaks)
        if best is None:
            rows.append([name, f"no sustained step ({others})", status(False)])
        else:
            aim = "aim reached" if best[0] >= FANOUT_AIM else "aim not reached"
            figure = f"{fmt_int(best[0])}/s at {best[1]}, {aim}" + (f" ({others})" if len(peaks) > 1 else "")
            rows.append([name, figure, status(best[0] >= FANOUT_TARGET)])
    for run in fanouts or [None]:
        name = f"p99 ≤ {P99_TARGET_MS:g} ms at half the peak rate" + (f", {label(run)}" if run else "")
        if run is None:
            rows.append([name, DASH, "not run"])
            continue
        _, step = marked_step(run, "halfPeak")
        p99 = num(get(step, "latencyMs", "p99"))
        if step is None:
            why = "no half-peak step" if get(run, "fanout", "peak") else "no peak, so no half-peak step"
            rows.append([name, why, status(None)])
        else:
            rate = fmt_int(step.get("offeredDeliveriesPerSecond"))
            rows.append([name, f"{fmt_sig(p99, ' ms')} at {rate} deliveries/s offered",
                         status(None if p99 is None else p99 <= P99_TARGET_MS)])
    name = f"memory per idle connection ≤ 16 KB ({IDLE_TARGET_BYTES:,} bytes)"
    if idle is None:
        rows.append([name, DASH, "not run"])
    else:
        i, per = idle["idle"], idle_bytes(idle["idle"])
        figure = DASH if per is None else f"{per / 1024:,.1f} KB ({fmt_int(i.get('clients'))} clients)"
        rows.append([name, figure, status(None if per is None else per <= IDLE_TARGET_BYTES)])
    name = "server CPU per delivery at peak (informational)"
    if not fanouts:
        rows.append([name, DASH, "not run"])
    else:
        figures = [f"{label(r)}: {fmt_sig(get(marked_step(r, 'peak')[1], 'serverCpuMicrosPerDelivery'), ' µs')}"
                   for r in fanouts]
        rows.append([name, ", ".join(figures), "informational"])
    name = "failover ≤ 1 s at p99 (every client resumed)"
    if failover is None:
        rows.append([name, DASH, "not run"])
    else:
        f = failover["failover"]
        resumed, accepting = num(get(f, "resumedMs", "p99")), num(get(f, "acceptingMs", "p99"))
        lost = num(f.get("neverRecovered")) or 0  # faults after which something never recovered: no sample
        figure = (f"resumed p99 {fmt_sig(resumed, ' ms')}, accepting p99 {fmt_sig(accepting, ' ms')} "
                  f"({fmt_int(f.get('trials'))} trials" + (f", {fmt_int(lost)} never recovered)" if lost else ")"))
        rows.append([name, figure, status(None if resumed is None else resumed <= FAILOVER_TARGET_MS and not lost)])
    name = "joins/s (informational)"
    if joins is None:
        rows.append([name, DASH, "not run"])
    else:
        j = joins["joins"]
        figure = f"peak {fmt_int(j.get('peakJoinsPerSecond'))} joins/s; "
        failure = j.get("firstFailure")
        if isinstance(failure, dict):
            offered = get(steps_of(j), failure.get("step"), "offeredJoinsPerSecond")
            figure += f"first failure at {fmt_int(offered)} offered/s: {failure.get('reason') or 'reason not given'}"
        else:
            top = max((num(s.get("offeredJoinsPerSecond")) or 0 for s in steps_of(j)), default=0)
            figure += f"no failure up to {fmt_int(top)} offered/s"
        rows.append([name, figure, "informational"])
    return rows


# ---------------------------------------------------------------- markdown

def provenance(runs: list[Run]) -> str:
    dates = sorted({str(r.get("startedAt"))[:10] for r in runs if r.get("startedAt")})
    machines: list[str] = []
    for r in runs:
        m = r.get("machine") if isinstance(r.get("machine"), dict) else {}
        text = (f"{fmt_int(m.get('cores'))} cores ({m.get('cpu') or 'unknown CPU'}), "
                f"kernel {m.get('kernel') or 'unknown'}, {fmt_int(m.get('memoryMiB'))} MiB memory")
        if text not in machines:
            machines.append(text)
    builds = sorted({"**debug**" if r.get("build") == "debug" else str(r.get("build") or "unknown") for r in runs})
    commits = sorted({str(r.get("commit") or "unknown") for r in runs})
    return (f"Measured {', '.join(dates) or 'on an unrecorded date'} on {'; '.join(machines)}; "
            f"{' and '.join(builds)} build{'s' if len(builds) > 1 else ''}, "
            f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}. "
            "Reproduce with `scripts/bench.sh` (the whole suite) or the command above each table.")


def run_line(run: Run) -> str:
    when = str(run.get("startedAt") or "date unknown")
    return f"{code(run.get('command'))} ({when}, {run.get('build') or 'unknown'} build, commit {run.get('commit') or 'unknown'}):"


def latency_cells(lat: Any, keys: tuple[str, ...]) -> list[str]:
    return [fmt_sig(get(lat, k)) for k in keys]


def fanout_md(run: Run) -> str:
    f = run["fanout"]
    peak, _ = marked_step(run, "peak")
    half, _ = marked_step(run, "halfPeak")
    rows = []
    for i, s in enumerate(steps_of(f)):
        mark = " (peak)" if i == peak else " (half peak)" if i == half else ""
        sustained = {True: "yes", False: "no"}.get(s.get("sustained"), DASH)
        rows.append([f"{i}{mark}", fmt_int(s.get("offeredMessagesPerSecond")),
                     fmt_int(s.get("offeredDeliveriesPerSecond")), fmt_int(s.get("deliveriesPerSecond")),
                     *latency_cells(s.get("latencyMs"), ("p50", "p99", "p999", "max")),
                     fmt_sig(s.get("serverCpuMicrosPerDelivery")), sustained,
                     fmt_int(s.get("slowConsumers")), fmt_int(s.get("errors"))])
    m, p = config(run)
    head = (f"#### {label(run)}: {fmt_int(m)} meeting{'' if num(m) == 1 else 's'} × {fmt_int(p)} participants, "
            f"{fmt_int(f.get('messageBytes'))}-byte messages, {fmt_g(f.get('stepSeconds'))} s steps")
    header = ["step", "offered msg/s", "offered deliveries/s", "delivered/s", "p50 ms", "p99 ms",
              "p99.9 ms", "max ms", "server µs/delivery", "sustained", "slow consumers", "errors"]
    return "\n\n".join([head, run_line(run), table(header, rows)])


def joins_md(run: Run) -> str:
    j = run["joins"]
    rows = [[str(i), fmt_int(s.get("offeredJoinsPerSecond")), fmt_int(s.get("attempted")), fmt_int(s.get("joined")),
             fmt_int(s.get("rejected")), fmt_int(s.get("timedOut")), fmt_int(s.get("joinsPerSecond")),
             *latency_cells(s.get("latencyMs"), ("p50", "p99", "max"))] for i, s in enumerate(steps_of(j))]
    failure = j.get("firstFailure")
    note = (f"First failure at step {failure.get('step')}: {failure.get('reason') or 'reason not given'}."
            if isinstance(failure, dict) else "No failure.")
    intro = (f"{fmt_int(j.get('participantsPerMeeting'))} participants per meeting, join timeout "
             f"{fmt_int(j.get('timeoutMs'))} ms, {fmt_g(j.get('stepSeconds'))} s steps. "
             f"Peak {fmt_int(j.get('peakJoinsPerSecond'))} joins/s. {note}")
    header = ["step", "offered joins/s", "attempted", "joined", "rejected", "timed out", "joins/s",
              "p50 ms", "p99 ms", "max ms"]
    return "\n\n".join([run_line(run), table(header, rows), intro])


def idle_md(run: Run) -> str:
    i = run["idle"]
    mib = lambda v: DASH if num(v) is None else f"{fmt_int(v)} ({num(v) / 2**20:,.1f} MiB)"
    per = idle_bytes(i)
    rows = [["clients", fmt_int(i.get("clients"))], ["meetings", fmt_int(i.get("meetings"))],
            ["server RSS before, bytes", mib(i.get("rssBeforeBytes"))],
            ["server RSS after, bytes", mib(i.get("rssAfterBytes"))],
            ["bytes per connection", DASH if per is None else f"{fmt_int(per)} ({per / 1024:,.1f} KB)"],
            ["settle time", f"{fmt_g(i.get('settleSeconds'))} s"]]
    return "\n\n".join([run_line(run), table(["", ""], rows)])


def failover_md(run: Run) -> str:
    f = run["failover"]
    rows = [[name, fmt_int(get(f, key, "count")), *latency_cells(f.get(key), ("p50", "p99", "max"))]
            for name, key in (("ops accepted again", "acceptingMs"), ("every client resumed", "resumedMs"))]
    ops = f.get("ops") if isinstance(f.get("ops"), dict) else {}
    text = (f"{fmt_int(f.get('trials'))} trials, {fmt_int(f.get('faults'))} faults, {fmt_int(f.get('meetings'))} "
            f"meetings × {fmt_int(f.get('clientsPerMeeting'))} clients at {fmt_g(f.get('opsPerSecondPerClient'))} "
            f"ops/s each. Ops: {fmt_int(ops.get('sent'))} sent, {fmt_int(ops.get('acked'))} acknowledged, "
            f"{fmt_int(ops.get('rejected'))} rejected, {fmt_int(ops.get('unknown'))} unknown; "
            f"anomalies: **{fmt_int(f.get('anomalies'))}**"
            + (f"; never recovered: **{fmt_int(f.get('neverRecovered'))}**." if "neverRecovered" in f else "."))
    return "\n\n".join([run_line(run), table(["time after the fault", "samples", "p50 ms", "p99 ms", "max ms"], rows), text])


def markdown(fanouts: list[Run], joins: Run | None, idle: Run | None, failover: Run | None,
             target_rows: list[list[str]], images: dict[str, str]) -> str:
    runs = fanouts + [r for r in (joins, idle, failover) if r]
    parts = ["*Generated by `scripts/bench_report.py` from the `parley bench` results; "
             "edits between the bench markers are overwritten.*", provenance(runs),
             "### Targets", table(["target", "figure", "status"], target_rows)]

    def add(title: str, bodies: list[str], plots: list[tuple[str, str]]) -> None:
        parts.append(f"### {title}")
        parts.extend(bodies or ["Not run."])
        parts.extend(f"![{alt}]({images[key]})" for key, alt in plots if key in images)

    add("Fan-out", [fanout_md(r) for r in fanouts],
        [("fanout-throughput", "Fan-out throughput"), ("fanout-latency-vs-rate", "Fan-out latency against rate"),
         ("fanout-latency-cdf", "Fan-out latency CDF at half the peak rate")])
    add("Joins", [joins_md(joins)] if joins else [], [("joins", "Joins")])
    add("Idle connections", [idle_md(idle)] if idle else [], [])
    add("Failover", [failover_md(failover)] if failover else [], [("failover", "Failover")])
    return "\n\n".join(parts)


def splice(doc: str, section: str) -> str:
    """The doc with `section` between the markers (appended with a heading when there are none)."""
    nl = "\r\n" if "\r\n" in doc else "\n"
    section = section.replace("\n", nl)
    begin = doc.find(BEGIN)
    end = doc.find(END, begin + len(BEGIN)) if begin >= 0 else -1
    if begin >= 0 and end >= 0:
        return doc[:begin + len(BEGIN)] + nl + section + nl + doc[end:]
    if begin >= 0 or END in doc:
        raise SystemExit(f"bench_report: the doc has only one of {BEGIN} / {END} (or them in the wrong order); "
                         "fix it by hand, nothing was written")
    gap = "" if not doc or doc.endswith(nl * 2) else nl if doc.endswith(nl) else nl * 2
    return f"{doc}{gap}{SECTION_TITLE}{nl}{nl}{BEGIN}{nl}{section}{nl}{END}{nl}"


# ---------------------------------------------------------------- plots

def points(steps: list[dict], x: str, y: Callable[[dict], Any]) -> tuple[list[float], list[float]]:
    pairs = [(num(s.get(x)), num(y(s))) for s in steps]
    pairs = sorted((a, b) for a, b in pairs if a is not None and b is not None and a > 0 and b > 0)
    return [a for a, _ in pairs], [b for _, b in pairs]


def plot_fanout_cdf(ax: Any, fanouts: list[Run]) -> bool:
    drawn = False
    for color, run in enumerate(fanouts):
        _, step = marked_step(run, "halfPeak")
        cdf = [(num(get(p, 0)), num(get(p, 1))) for p in (get(step, "latencyCdf") or [])]
        cdf = [(x, y) for x, y in cdf if x is not None and y is not None and x > 0]
        if cdf:
            rate = fmt_int(step.get("offeredMessagesPerSecond"))
            ax.plot([x for x, _ in cdf], [y for _, y in cdf], color=f"C{color}", lw=2,
                    label=f"{label(run)} at {rate} msg/s")
            drawn = True
    ax.axvline(P99_TARGET_MS, color="red", ls="--", label="p99 target 10 ms")
    ax.axhline(99, color="gray", ls=":", lw=1)
    ax.legend(loc="lower right")
    ax.set(xscale="log", ylim=(0, 100.5), xlabel="latency (ms)", ylabel="percentile",
           title="Fan-out latency CDF at half of the peak rate")
    return drawn


def plot_fanout_throughput(ax: Any, fanouts: list[Run]) -> bool:
    every: list[float] = []
    delivered: Callable[[dict], Any] = lambda s: s.get("deliveriesPerSecond")
    for color, run in enumerate(fanouts):
        xs, ys = points(steps_of(run["fanout"]), "offeredDeliveriesPerSecond", delivered)
        if xs:
            ax.plot(xs, ys, "o-", color=f"C{color}", lw=2, label=label(run))
            every += xs + ys
    if not every:
        return False
    failed = [s for r in fanouts for s in steps_of(r["fanout"]) if s.get("sustained") is False]
    ux, uy = points(failed, "offeredDeliveriesPerSecond", delivered)
    if ux:
        ax.plot(ux, uy, "o", ms=10, mfc="none", mec="black", mew=1.5, label="step not sustained")
    lo, hi = min(every + [FANOUT_TARGET]) / 1.5, max(every + [FANOUT_AIM]) * 1.5
    ax.plot([lo, hi], [lo, hi], color="gray", ls=":", label="ideal (delivered = offered)")
    ax.axhline(FANOUT_TARGET, color="red", ls="--", label=f"target {FANOUT_TARGET:,}/s")
    ax.axhline(FANOUT_AIM, color="green", ls="--", label=f"aim {FANOUT_AIM:,}/s")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="offered deliveries/s",
           ylabel="delivered deliveries/s", title="Fan-out throughput (deliveries = messages × recipients)")
    return True


def plot_fanout_latency(ax: Any, fanouts: list[Run]) -> bool:
    drawn = False
    for color, run in enumerate(fanouts):
        for q, style in (("p99", "o-"), ("p50", "s--")):
            xs, ys = points(steps_of(run["fanout"]), "deliveriesPerSecond", lambda s: get(s, "latencyMs", q))
            if xs:
                ax.plot(xs, ys, style, color=f"C{color}", lw=2 if q == "p99" else 1.2, label=f"{label(run)} {q}")
                drawn = True
    ax.axhline(P99_TARGET_MS, color="red", ls=":", label="p99 target 10 ms")
    ax.set(xscale="log", yscale="log", xlabel="delivered deliveries/s", ylabel="latency (ms)",
           title="Fan-out latency against delivered rate")
    return drawn


def plot_joins(ax: Any, joins: Run) -> bool:
    j = joins["joins"]
    steps = steps_of(j)
    xs, ys = points(steps, "offeredJoinsPerSecond", lambda s: s.get("joinsPerSecond"))
    px, py = points(steps, "offeredJoinsPerSecond", lambda s: get(s, "latencyMs", "p99"))
    if not xs and not px:
        return False
    ax.plot(xs, ys, "o-", color="C0", lw=2, label="achieved joins/s")
    every = xs + ys
    if every:
        ax.plot([min(every), max(every)], [min(every), max(every)], color="gray", ls=":", label="ideal")
    failure = get(steps, get(j, "firstFailure", "step"), "offeredJoinsPerSecond")
    if num(failure):
        ax.axvline(num(failure), color="red", ls="--", label="first failure")
    if every and max(every) / min(every) > 20:
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel="offered joins/s", ylabel="achieved joins/s", title="Joins: throughput and p99 latency")
    ax2 = ax.twinx()
    ax2.plot(px, py, "s--", color="C1", lw=2, label="p99 join latency")
    ax2.set_ylabel("p99 join latency (ms)")
    ax2.grid(False)
    if py and max(py) / min(py) > 20:
        ax2.set_yscale("log")
    handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="upper left")
    return True


def plot_failover(ax: Any, failover: Run) -> bool:
    drawn = False
    for key, name, color in (("resumedMs", "every client resumed", "C0"), ("acceptingMs", "ops accepted", "C1")):
        samples = sorted(v for v in map(num, get(failover, "failover", "samples", key) or []) if v is not None)
        if samples:
            n = len(samples)
            ax.step(samples, [100 * (i + 1) / n for i in range(n)], where="post", color=color, lw=2,
                    label=f"{name} ({n} samples)")
            drawn = True
    ax.axvline(FAILOVER_TARGET_MS, color="red", ls="--", label="target 1 s")
    ax.axhline(99, color="gray", ls=":", lw=1)
    ax.set(ylim=(0, 100.5), xlim=(0, None), xlabel="time after the fault (ms)", ylabel="% of failovers",
           title="Failover: time until ops are accepted and every client resumed")
    return drawn


def write_plots(folder: Path, fanouts: list[Run], joins: Run | None, failover: Run | None) -> list[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): skipping the plots", file=sys.stderr)
        return []
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.grid": True, "grid.alpha": 0.35})
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")  # 0.1, 10, 100,000 (not 10^5)
    jobs: list[tuple[str, Any, Callable[[Any, Any], bool]]] = [
        ("fanout-latency-cdf", fanouts, plot_fanout_cdf), ("fanout-throughput", fanouts, plot_fanout_throughput),
        ("fanout-latency-vs-rate", fanouts, plot_fanout_latency), ("joins", joins, plot_joins),
        ("failover", failover, plot_failover)]
    written = []
    for name, data, plot in jobs:
        if not data:
            continue
        fig, ax = plt.subplots(figsize=(9, 5.6), dpi=100)
        if plot(ax, data):
            for axis in (a for axes in fig.axes for a in (axes.xaxis, axes.yaxis)):
                if axis.get_scale() == "log":
                    axis.set_major_formatter(plain)
            if ax.get_legend() is None:
                ax.legend(loc="best")
            ax.grid(True, which="both", alpha=0.3)
            fig.tight_layout()
            folder.mkdir(parents=True, exist_ok=True)
            fig.savefig(folder / f"{name}.png")
            written.append(folder / f"{name}.png")
        else:
            warn(f"no data to plot for {name}.png; skipped")
        plt.close(fig)
    return written


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description="Plots and docs section from `parley bench` JSON results.")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="folder of *.json results")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md", help="markdown doc to update")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs" / "plots", help="folder for the PNG plots")
    args = parser.parse_args()
    if not args.results.is_dir():
        print(f"bench_report: no results folder {args.results}", file=sys.stderr)
        return 1
    found = load_results(args.results)
    fanouts = sorted(newest_per_key(found["fanout"], config), key=fanout_order)
    joins, idle, failover = (next(iter(newest_per_key(found[b], lambda r: 0)), None)
                             for b in ("joins", "idle", "failover"))
    if not (fanouts or joins or idle or failover):
        print(f"bench_report: no {SCHEMA} results in {args.results}; nothing written", file=sys.stderr)
        return 1

    old = ""
    if args.doc.exists():
        with open(args.doc, encoding="utf-8", newline="") as doc:
            old = doc.read()
    splice(old, "")  # exits before anything is written when the doc has only one marker
    plots = write_plots(args.plots, fanouts, joins, failover)
    doc_dir = args.doc.resolve().parent
    images = {p.stem: Path(os.path.relpath(p.resolve(), doc_dir)).as_posix() for p in plots}
    target_rows = targets(fanouts, joins, idle, failover)
    section = markdown(fanouts, joins, idle, failover, target_rows, images)
    new = splice(old, section)
    if new != old:
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        with open(args.doc, "w", encoding="utf-8", newline="") as out:
            out.write(new)

    plain = [[c.replace("**", "") for c in row] for row in [["target", "figure", "status"]] + target_rows]
    widths = [max(len(row[i]) for row in plain) for i in range(3)]
    for row in plain:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print()
    for path in plots:
        print(f"wrote {path}")
    print(f"{'wrote' if new != old else 'unchanged'} {args.doc} (section between the bench markers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
