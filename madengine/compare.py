"""Result rows + baseline rows → a comparison (the stage after perf.csv: `compare`, `report`, `run --baseline`).

Input: perf.csv rows (dicts keyed by column name, as :func:`madengine.results.read_rows` returns them) for the
current run and for a baseline. Output: :class:`CompareResult`, one :class:`Comparison` per
(model, host, metric) — host left out with ``match_host=False`` — and, for `run --baseline`, rows with
their ``relative_change`` filled by :func:`apply_baseline`. Pure: nothing here prints or writes files.

Only SUCCESS rows with a numeric ``performance`` are measurements. Several rows for one key (repeated runs)
are summarised as median and min..max; a change is flagged only when the current median lies outside the
baseline's min..max widened by the threshold, so run-to-run noise already seen in the baseline is not
reported. With one row on each side this is the plain "beyond ±threshold" test.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._perf import FAILURE, SKIPPED, SUCCESS, parse_number

from madengine.errors import InvalidInputError, MadError

__all__ = [
    "DEFAULT_THRESHOLD",
    "HIGHER",
    "IMPROVEMENT",
    "LOWER",
    "MISSING",
    "NEW",
    "REGRESSION",
    "STATUSES",
    "UNCHANGED",
    "FAILED",
    "CompareResult",
    "Comparison",
    "Stats",
    "Thresholds",
    "apply_baseline",
    "compare_files",
    "compare_rows",
    "display_number",
    "format_change",
    "load_perf_rows",
    "load_thresholds",
    "metric_direction",
    "parse_threshold",
]

DEFAULT_THRESHOLD = 0.05  # 5 %

HIGHER = "higher"
LOWER = "lower"

REGRESSION = "REGRESSION"
IMPROVEMENT = "IMPROVEMENT"
NEW = "NEW"
MISSING = "MISSING"
FAILED = "FAILED"
UNCHANGED = "UNCHANGED"
# Most to least alarming; renderers order counts this way.
STATUSES = (REGRESSION, FAILED, MISSING, IMPROVEMENT, NEW, UNCHANGED)

REQUIRED_COLUMNS = ("model", "performance", "metric", "status")

# ---------------------------------------------------------------------------------------------- values


def parse_threshold(value: Any, where: str = "--threshold") -> float:
    """``"5%"``, ``"5"``, ``5`` or ``2.5`` → the fraction (0.05, 0.05, 0.05, 0.025).

    A bare number is a percentage too, so ``0.05`` means 0.05 %, never 5 %. Raises InvalidInputError
    naming ``where`` for anything else, or a negative value.
    """
    if isinstance(value, bool):
        value = None  # JSON true/false is not a percentage
    text = str(value).strip() if isinstance(value, (str, int, float)) else ""
    number = parse_number(text[:-1].strip() if text.endswith("%") else text)
    if number is None or number < 0:
        raise InvalidInputError(f"{where}: {value!r} is not a threshold",
                                hint="Give a non-negative percentage such as 5% (a bare number is a percentage too).",
                                example="madengine-cli compare perf.csv --baseline baseline.csv --threshold 3%")
    return number / 100.0


def format_change(fraction: float | None) -> str:
    """The relative change as perf.csv's ``relative_change`` holds it: ``+3.21%``, ``-0.50%``; "" for None."""
    if fraction is None or not math.isfinite(fraction):
        return ""
    return f"{fraction * 100:+.2f}%"


def display_number(value: float | None) -> str:
    """A measurement for people: ``14,164``, ``1,234.5``, ``12.345``, ``0.0001234``; "" for None."""
    if value is None:
        return ""
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1e9 or magnitude < 1:
        return f"{value:.4g}"
    digits = int(math.floor(math.log10(magnitude))) + 1
    text = f"{value:,.{min(3, max(0, 5 - digits))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


_TIME_WORDS = frozenset({"ms", "s", "sec", "secs", "second", "seconds", "us", "usec", "ns", "min", "mins",
                         "minute", "minutes", "hour", "hours", "latency", "time", "duration", "ttft", "tpot",
                         "itl", "e2el"})
_PER = re.compile(r"/|(?:^|_)per(?:_|$)")


def _time_like(part: str) -> bool:
    tokens = [t for t in re.split(r"[^a-z0-9]+", part) if t]
    return any(t in _TIME_WORDS or t.endswith(("time", "latency")) for t in tokens)


def metric_direction(metric: str) -> str:
    """``"lower"`` for latency-like metrics (``*_ms``, ``*_s``, ``latency``, ``seconds``, ``time``), else ``"higher"``.

    A rate is judged by its numerator: ``samples_per_second`` and ``tokens/s`` are throughput (higher),
    ``seconds_per_step`` and ``s/it`` are times (lower).
    """
    text = (metric or "").strip().lower()
    numerator = _PER.split(text, maxsplit=1)[0]
    if numerator != text and numerator:
        return LOWER if _time_like(numerator) else HIGHER
    return LOWER if _time_like(text) else HIGHER


# ---------------------------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Rule:
    """One thresholds-file entry: either field may be unset."""

    threshold: float | None = None
    direction: str | None = None


@dataclass
class Thresholds:
    """Per-model and per-metric rules from ``--per-model-thresholds``; model rules win over metric rules.

    File format (JSON)::

        {"default": {"threshold": "5%"},
         "resnet50": {"threshold": "3%", "direction": "lower"},
         "metrics": {"tokens_per_second": {"threshold": "8%"}}}
    """

    default: Rule = field(default_factory=Rule)
    models: dict[str, Rule] = field(default_factory=dict)
    metrics: dict[str, Rule] = field(default_factory=dict)

    def resolve(self, model: str, metric: str, threshold: float | None) -> tuple[float, str]:
        """``(threshold, direction)`` for one key; ``threshold`` is the CLI's --threshold (None if not given)."""
        rules = (self.models.get(model), self.metrics.get(metric))
        chosen_threshold = next((r.threshold for r in rules if r and r.threshold is not None), None)
        if chosen_threshold is None:
            chosen_threshold = threshold if threshold is not None else self.default.threshold
        direction = next((r.direction for r in (*rules, self.default) if r and r.direction), None)
        return (DEFAULT_THRESHOLD if chosen_threshold is None else chosen_threshold,
                direction or metric_direction(metric))


def _rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise InvalidInputError(f"{where} must be an object",
                                example='{"resnet50": {"threshold": "3%", "direction": "lower"}}')
    unknown = sorted(set(entry) - {"threshold", "direction"})
    if unknown:
        raise InvalidInputError(f"{where}: unknown field {unknown[0]!r}",
                                hint="An entry may hold only \"threshold\" and \"direction\".")
    threshold = parse_threshold(entry["threshold"], f"{where}.threshold") if "threshold" in entry else None
    direction = entry.get("direction")
    if direction is not None and direction not in (HIGHER, LOWER):
        raise InvalidInputError(f"{where}.direction: {direction!r} is not \"higher\" or \"lower\"")
    return Rule(threshold, direction)


def load_thresholds(path: str | os.PathLike[str]) -> Thresholds:
    """Read a ``--per-model-thresholds`` JSON file. Raises InvalidInputError naming the file and field."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"Thresholds file {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read thresholds file {source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                example='{"default": {"threshold": "5%"}, '
                                        '"resnet50": {"threshold": "3%", "direction": "lower"}}') from None
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{source} must hold a JSON object keyed by model name")
    result = Thresholds()
    for name, entry in data.items():
        where = f"{source}: {name}"
        if name == "default":
            result.default = _rule(entry, where)
        elif name == "metrics":
            if not isinstance(entry, Mapping):
                raise InvalidInputError(f"{where} must be an object keyed by metric name")
            result.metrics = {str(k): _rule(v, f"{where}.{k}") for k, v in entry.items()}
        else:
            result.models[str(name)] = _rule(entry, where)
    return result


# ---------------------------------------------------------------------------------------------- rows


def load_perf_rows(path: str | os.PathLike[str], label: str = "CSV") -> list[dict[str, str]]:
    """The rows of a perf.csv to compare. Raises InvalidInputError (exit 4) naming the file and the problem.

    A file with a header and no rows is valid (nothing measured); a missing file, one without a header,
    or one lacking a required column is not. SUCCESS rows must have a numeric performance.
    """
    from madengine.results import read_rows

    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(f"{label} file {source} does not exist" if not source.exists()
                                else f"{label} file {source} is not a file")
    try:
        with open(source, encoding="utf-8-sig", newline="") as fh:
            header_line = fh.readline()
        rows = read_rows(source)
    except MadError as exc:  # PerfCsvError: a malformed CSV is bad input here
        raise InvalidInputError(exc.message, hint=exc.hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read {label} file {source}: {exc}") from None
    if not header_line.strip():
        raise InvalidInputError(f"{label} file {source} is empty (no header row)")
    header = set(rows[0]) if rows else {c.strip() for c in next(csv.reader([header_line]), [])}
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInputError(f"{label} file {source} has no {missing[0]!r} column",
                                hint=f"A perf.csv needs the columns {', '.join(REQUIRED_COLUMNS)}.")
    for number, row in enumerate(rows, start=1):
        if _status(row) == SUCCESS and _value(row) is None:
            raise InvalidInputError(
                f"{label} file {source}, row {number} (model {row.get('model', '')!r}): "
                f"performance {row.get('performance', '')!r} is not a number",
                hint="A SUCCESS row needs a numeric performance; fix the value or mark the row FAILURE.")
    return rows


def _status(row: Mapping[str, Any]) -> str:
    return str(row.get("status") or "").strip().upper()


def _value(row: Mapping[str, Any]) -> float | None:
    return parse_number(str(row.get("performance") or ""))


def _text(row: Mapping[str, Any], column: str) -> str:
    return str(row.get(column) or "").strip()


Key = tuple[str, str, str]  # (model, host, metric); host is "" when hosts are not matched


def _key(row: Mapping[str, Any], match_host: bool) -> Key:
    return _text(row, "model"), _text(row, "host") if match_host else "", _text(row, "metric")


@dataclass(frozen=True)
class Stats:
    """Measurements of one key on one side: count, median and the spread min..max."""

    n: int
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(len(values), float(statistics.median(values)), float(min(values)), float(max(values)))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "median": self.median, "min": self.min, "max": self.max}


@dataclass
class Comparison:
    """One (model, host, metric): its status against the baseline and the numbers behind it.

    ``relative_change`` and ``threshold`` are fractions (0.05 = 5 %). ``failures`` counts the current
    FAILURE rows for the key; ``reason`` is the last one's reason (or why the key is MISSING).
    """

    model: str
    host: str
    metric: str
    status: str
    direction: str
    threshold: float
    current: Stats | None = None
    baseline: Stats | None = None
    relative_change: float | None = None
    failures: int = 0
    reason: str = ""

    @property
    def change_text(self) -> str:
        return format_change(self.relative_change)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "host": self.host, "metric": self.metric, "status": self.status,
            "direction": self.direction, "threshold": self.threshold,
            "current": self.current.to_dict() if self.current else None,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "relative_change": self.relative_change, "relative_change_text": self.change_text,
            "failures": self.failures, "reason": self.reason,
        }


@dataclass
class CompareResult:
    """All comparisons, ordered by model, host and metric."""

    entries: list[Comparison]
    match_host: bool = True
    current_path: str = ""
    baseline_path: str = ""

    @property
    def regressions(self) -> list[Comparison]:
        return [e for e in self.entries if e.status == REGRESSION]

    def counts(self) -> dict[str, int]:
        """Entries per status, every status present (zero included), most alarming first."""
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.entries:
            counts[entry.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current_path, "baseline": self.baseline_path, "match_host": self.match_host,
            "counts": self.counts(), "regressions": len(self.regressions),
            "entries": [e.to_dict() for e in self.entries],
        }


def _relative(current: float, baseline: float) -> float | None:
    return None if baseline == 0 else (current - baseline) / abs(baseline)


def _judge(current: Stats, baseline: Stats, threshold: float, direction: str) -> str:
    """REGRESSION / IMPROVEMENT when the current median is outside the widened baseline band."""
    low = baseline.min - threshold * abs(baseline.min)
    high = baseline.max + threshold * abs(baseline.max)
    if current.median < low:
        return REGRESSION if direction == HIGHER else IMPROVEMENT
    if current.median > high:
        return IMPROVEMENT if direction == HIGHER else REGRESSION
    return UNCHANGED


def _measurements(rows: Iterable[Mapping[str, Any]], match_host: bool) -> dict[Key, list[float]]:
    values: dict[Key, list[float]] = {}
    for row in rows:
        value = _value(row)
        if _status(row) == SUCCESS and value is not None:
            values.setdefault(_key(row, match_host), []).append(value)
    return values


def compare_rows(current_rows: Iterable[Mapping[str, Any]], baseline_rows: Iterable[Mapping[str, Any]], *,
                 threshold: float | None = None, thresholds: Thresholds | None = None,
                 match_host: bool = True) -> CompareResult:
    """Compare current rows with baseline rows (see the module docstring for the rules).

    ``threshold`` is a fraction; None means the thresholds file's default, else 5 %. A FAILURE row with
    no metric (a run that never printed one) counts against every metric its model (and host) has on
    either side. A baseline key without current measurements is FAILED when the current run has
    FAILURE rows for it, else MISSING.
    """
    thresholds = thresholds or Thresholds()
    current_rows = list(current_rows)
    current = _measurements(current_rows, match_host)
    baseline = _measurements(baseline_rows, match_host)
    known = sorted(set(current) | set(baseline))

    failures: dict[Key, list[Mapping[str, Any]]] = {}
    skipped: dict[Key, list[Mapping[str, Any]]] = {}
    for row in current_rows:
        status = _status(row)
        if status == SUCCESS and _value(row) is not None:
            continue
        model, host, metric = _key(row, match_host)
        keys = [(model, host, metric)] if metric else (
            [k for k in known if k[:2] == (model, host)] or [(model, host, "")])
        target = skipped if status == SKIPPED else failures
        for key in keys:
            target.setdefault(key, []).append(row)

    entries: list[Comparison] = []
    for key in sorted(set(known) | set(failures)):
        model, host, metric = key
        limit, direction = thresholds.resolve(model, metric, threshold)
        entry = Comparison(model, host, metric, UNCHANGED, direction, limit)
        failed = failures.get(key, [])
        entry.failures = len(failed)
        if failed:
            entry.reason = _text(failed[-1], "reason") or f"status {_text(failed[-1], 'status') or FAILURE}"
        if key in baseline:
            entry.baseline = Stats.of(baseline[key])
        if key in current:
            entry.current = Stats.of(current[key])
        if entry.current and entry.baseline:
            entry.status = _judge(entry.current, entry.baseline, limit, direction)
            entry.relative_change = _relative(entry.current.median, entry.baseline.median)
        elif entry.current:
            entry.status = NEW
        elif failed:
            entry.status = FAILED
        else:
            entry.status = MISSING
            if key in skipped:
                entry.reason = _text(skipped[key][-1], "reason") or "skipped in the current run"
            else:
                entry.reason = "no row in the current results"
        entries.append(entry)
    return CompareResult(entries, match_host=match_host)


def compare_files(current: str | os.PathLike[str], baseline: str | os.PathLike[str], *,
                  threshold: float | None = None, thresholds_file: str | os.PathLike[str] | None = None,
                  match_host: bool = True) -> CompareResult:
    """:func:`compare_rows` on two perf.csv files. Raises InvalidInputError for unusable input."""
    thresholds = load_thresholds(thresholds_file) if thresholds_file else None
    result = compare_rows(load_perf_rows(current, "Current"), load_perf_rows(baseline, "Baseline"),
                          threshold=threshold, thresholds=thresholds, match_host=match_host)
    result.current_path, result.baseline_path = str(current), str(baseline)
    return result


def apply_baseline(rows: Iterable[Mapping[str, Any]], baseline_rows: Iterable[Mapping[str, Any]], *,
                   match_host: bool = True) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``relative_change`` filled against the baseline (for `run --baseline`).

    Each SUCCESS row is compared with the median of the baseline's SUCCESS rows for its key (model, host,
    metric; host ignored with ``match_host=False``) and gets e.g. ``+3.21%``. Rows without a baseline
    measurement, a zero baseline or a non-SUCCESS status keep ``relative_change`` empty.
    """
    medians = {key: statistics.median(values) for key, values in _measurements(baseline_rows, match_host).items()}
    out: list[dict[str, Any]] = []
    for row in rows:
        filled = dict(row)
        value, base = _value(row), medians.get(_key(row, match_host))
        change = None
        if _status(row) == SUCCESS and value is not None and base is not None:
            change = _relative(value, base)
        if change is None:
            filled.setdefault("relative_change", "")
        else:
            filled["relative_change"] = format_change(change)
        out.append(filled)
    return out
