"""The data gate as `secure-pipeline scan-data` runs it, with each check's wall time measured here.

No stage reports its own duration, so the time of a check is taken from the gate's progress
callbacks: from its "data gate: NAME" message to the next one (the last check runs to the end of
the scan, which adds the report's assembly and schema validation, milliseconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PREFIX = "data gate: "


@dataclass
class TimedScan:
    report: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


def scan(data: Path, target: str, *, reference: Path | None = None, config: Any = None,
         echo: Callable[[str], None] | None = None) -> TimedScan:
    """Run `secure_pipeline.runner.scan_data` (config: a Config, a YAML path or None for the defaults)."""
    from secure_pipeline import runner
    from secure_pipeline.config import Config, load_config

    settings = config if isinstance(config, Config) else load_config(Path(config) if config else None)
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()

    def progress(message: str) -> None:
        if message.startswith(PREFIX):
            marks.append((message.removeprefix(PREFIX).strip(), time.perf_counter()))
        if echo:
            echo(f"[{time.perf_counter() - started:6.1f}s] {message}")

    report = runner.scan_data(Path(data), target, reference=reference, config=settings, progress=progress)
    ended = time.perf_counter()
    seconds = {name: (marks[i + 1][1] if i + 1 < len(marks) else ended) - at for i, (name, at) in enumerate(marks)}
    return TimedScan(report, seconds, ended - started)
