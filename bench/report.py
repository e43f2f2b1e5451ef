"""Aggregate runs and render the tables that bench/run.py prints."""

from __future__ import annotations

import dataclasses
import statistics

from nodes import STEPS
from steps import StepResult

MB = 1_000_000  # throughput unit: 10^6 bytes
MIB = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One delivery of one payload by one tool: its steps (nodes.STEPS)."""

    tool: str
    case: str  # "256 MiB", "100-byte message"
    payload_bytes: int
    bundle_bytes: int  # what `send` left in the sender's spool
    steps: list[StepResult]
    # per xfer step: did the bundle keep its inode (a hard link) rather than being copied?
    linked: dict[str, bool]


@dataclasses.dataclass(frozen=True, slots=True)
class StepSummary:
    step: str
    seconds: float  # median over runs
    cpu_seconds: float  # median over runs
    max_rss_mib: float  # highest over runs


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    tool: str
    case: str
    payload_bytes: int
    bundle_bytes: int
    runs: int
    steps: list[StepSummary]
    linked: dict[str, bool]  # true if it linked in any run

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    @property
    def cpu_seconds(self) -> float:
        return sum(step.cpu_seconds for step in self.steps)

    @property
    def peak_rss_mib(self) -> float:
        return max(step.max_rss_mib for step in self.steps)

    @property
    def mb_per_second(self) -> float:
        return self.payload_bytes / MB / self.seconds

    def step(self, name: str) -> StepSummary:
        return next(step for step in self.steps if step.step == name)


def summarize(runs: list[Run]) -> Summary:
    first = runs[0]
    steps = []
    for name in STEPS:
        results = [next(s for s in run.steps if s.step == name) for run in runs]
        steps.append(
            StepSummary(
                step=name,
                seconds=statistics.median(r.seconds for r in results),
                cpu_seconds=statistics.median(r.cpu_seconds for r in results),
                max_rss_mib=max(r.max_rss_mib for r in results),
            )
        )
    linked = {
        step: any(run.linked.get(step, False) for run in runs)
        for step in ("xfer out", "xfer in + toss")
    }
    return Summary(
        first.tool, first.case, first.payload_bytes, first.bundle_bytes, len(runs), steps, linked
    )


def human_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    if size >= MIB:
        return f"{size / MIB:.1f} MiB"
    return f"{size} B"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "-"


def step_table(rise: Summary, nncp: Summary | None, *, throughput: bool = True) -> list[str]:
    """Per-step wall time, MB/s, CPU time and max RSS; rise-dtn and NNCP side by side."""
    tools = [rise] + ([nncp] if nncp is not None else [])
    cell = "{:>9} {:>9} {:>8} {:>8}"
    head = cell.format("wall s", "MB/s" if throughput else "", "CPU s", "RSS MiB")
    width = len(head)
    lines = [
        f"{'':<15}"
        + "  ".join(f"{t.tool:^{width}}" for t in tools)
        + (f"  {'rise/NNCP':>9}" if nncp else ""),
        f"{'step':<15}" + "  ".join(head for _ in tools) + (f"  {'speed':>9}" if nncp else ""),
    ]

    def cells(summary: Summary, seconds: float, cpu: float, rss: float) -> str:
        rate = f"{summary.payload_bytes / MB / seconds:.1f}" if throughput else ""
        return cell.format(f"{seconds:.3f}", rate, f"{cpu:.2f}", f"{rss:.1f}")

    for name in STEPS:
        row = [cells(t, *_step_values(t.step(name))) for t in tools]
        ratio = f"  {_ratio(nncp.step(name).seconds, rise.step(name).seconds):>9}" if nncp else ""
        lines.append(f"{name:<15}" + "  ".join(row) + ratio)
    row = [cells(t, t.seconds, t.cpu_seconds, t.peak_rss_mib) for t in tools]
    ratio = f"  {_ratio(nncp.seconds, rise.seconds):>9}" if nncp else ""
    lines.append(f"{'end-to-end':<15}" + "  ".join(row) + ratio)
    return [line.rstrip() for line in lines]


def _step_values(step: StepSummary) -> tuple[float, float, float]:
    return step.seconds, step.cpu_seconds, step.max_rss_mib


def overhead_line(summary: Summary) -> str:
    extra = summary.bundle_bytes - summary.payload_bytes
    share = 100 * extra / summary.payload_bytes
    return (
        f"{summary.tool}: {summary.bundle_bytes:,} bytes in the spool for "
        f"{summary.payload_bytes:,} bytes of payload (+{extra:,} bytes, {share:.4f} %)"
    )


def transfer_line(summary: Summary) -> str:
    how = [
        f"{step} {'hard-linked' if summary.linked[step] else 'copied'}"
        for step in ("xfer out", "xfer in + toss")
    ]
    return f"{summary.tool}: bundle {', '.join(how)}"


def summary_table(pairs: list[tuple[Summary, Summary | None]]) -> list[str]:
    with_nncp = any(nncp is not None for _rise, nncp in pairs)
    head = f"{'payload':<17} {'rise MB/s':>10} {'rise RSS':>9}"
    if with_nncp:
        head += f" {'NNCP MB/s':>10} {'NNCP RSS':>9} {'rise/NNCP':>10}"
    lines = [head]
    for rise, nncp in pairs:
        line = f"{rise.case:<17} {rise.mb_per_second:>10.1f} {rise.peak_rss_mib:>9.1f}"
        if nncp is not None:
            line += (
                f" {nncp.mb_per_second:>10.1f} {nncp.peak_rss_mib:>9.1f}"
                f" {_ratio(rise.mb_per_second, nncp.mb_per_second):>10}"
            )
        elif with_nncp:
            line += f" {'-':>10} {'-':>9} {'-':>10}"
        lines.append(line)
    return lines


def as_json(summary: Summary, runs: list[Run]) -> dict[str, object]:
    return {
        "tool": summary.tool,
        "case": summary.case,
        "payload_bytes": summary.payload_bytes,
        "bundle_bytes": summary.bundle_bytes,
        "runs": summary.runs,
        "hard_linked": summary.linked,
        "median": {
            "end_to_end_seconds": summary.seconds,
            "end_to_end_mb_per_s": summary.mb_per_second,
            "cpu_seconds": summary.cpu_seconds,
            "peak_rss_mib": summary.peak_rss_mib,
            "steps": [dataclasses.asdict(step) for step in summary.steps],
        },
        "all_runs": [
            [
                {key: value for key, value in dataclasses.asdict(step).items() if key != "stdout"}
                for step in run.steps
            ]
            for run in runs
        ],
    }
