"""madengine result step of a Kubernetes Job: the model's output -> perf rows on stdout.

Shipped in the madengine-config ConfigMap beside ``_perf.py``, the perf parser local and cluster runs
use, so a Job's rows are the rows `madengine-cli run` would write. Usage (see run.sh in the Job):

    python3 -B madengine_result.py JOB_SPEC.json LOG EXIT_CODE STARTED_AT SECONDS [T0 T1]

SECONDS is the run time in whole seconds; T0 and T1 (``date +%s.%N`` before and after the model) give
it exactly where ``date`` supports ``%N``.

Prints ``MADENGINE-RESULT-BEGIN``, one JSON row per line, ``MADENGINE-RESULT-END``, and writes the same
lines to ``<results_dir>/<job>.result.jsonl``. Needs only the standard library (python3 >= 3.7).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _perf import failure_row, rows_for_run  # noqa: E402


def _duration(seconds, t0="", t1=""):
    try:
        return max(float(t1) - float(t0), 0.0)
    except ValueError:
        return float(seconds)


def main(argv):
    spec_path, log_path, exit_code, started, seconds = argv[1:6]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    model = spec["model"]
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        text = ""
    exit_code = int(exit_code)
    duration = _duration(seconds, *argv[6:8])
    timeout = spec.get("timeout")
    # `timeout` exits 124 (TERM) or 137 (KILL after the grace); only then, at the limit, is it a timeout.
    timed_out = bool(timeout) and exit_code in (124, 137) and duration >= timeout - 1
    node = os.environ.get("MADENGINE_NODE_NAME", "")
    row = dict(spec["row"])
    row.update(host=node, machine_name=node, test_duration=round(duration, 3), started_at=started)
    csv_name = model.get("multiple_results")
    csv_path = os.path.join(spec["run_directory"], csv_name) if csv_name else None
    try:
        rows = rows_for_run(model, text, exit_code, timed_out, timeout, csv_path, **row)
    except Exception as exc:  # noqa: BLE001 - a row is always printed, whatever happened
        rows = [failure_row(model, f"result step failed: {exc}", **row)]
    note = spec.get("data_problem") or ""  # data that was not mounted: said in every row's reason
    rows = [dict(r, reason=f"{r['reason']}; {note}" if r.get("reason") else note) if note else r for r in rows]
    lines = [spec["begin"]] + [json.dumps(r) for r in rows] + [spec["end"]]
    out = "\n".join(lines) + "\n"
    sys.stdout.write(out)
    sys.stdout.flush()
    try:
        with open(os.path.join(spec["results_dir"], spec["job"] + ".result.jsonl"), "w", encoding="utf-8") as h:
            h.write(out)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
