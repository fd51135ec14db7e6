"""Run every benchmark of the project and gather the figures into one JSON (and a Markdown table).

    python benchmarks/run_all.py --out results/benchmarks/benchmarks.json \\
        [--markdown results/benchmarks/benchmarks.md] [--quick | --full] [--only embed geometry ...] \\
        [--max-load 0.5] [--settle-s 60] [--retries 2]

1. Every ``benchmarks/bench_*.py`` in its own subprocess with a timeout, writing its JSON to a temporary
   ``--out`` file. Size options are chosen per script so that the whole default run stays under ~15
   minutes on 2 CPU cores before bench_contention.py and bench_dag.py (the paper-scale DAG) were added,
   which add several minutes, plus any waiting for the load to settle (``--quick``: a few minutes, a smoke
   test; ``--full``: each script's own defaults, paper scale, much longer). Only options a script lists in
   its ``--help`` are passed, so a script whose options changed still runs; ``--cores`` is passed to the
   scripts that have it (bench_dag.py). A failing, crashing or timed-out script is recorded
   (status, return code, the end of its stderr) and the run goes on.
2. The offline demo end to end (``snakemake --cores N --configfile config/demo.yaml``) in a fresh scratch
   directory: wall time, number of jobs, the peak RSS of the largest process (``ru_maxrss`` of the
   Snakemake process tree) and per rule from Snakemake's own ``benchmark:`` files; then the no-op rerun
   (which must say "Nothing to be done") and its wall time.

Every figure (each script run, the demo's end-to-end run, its no-op rerun) carries the 1-minute load
average at which it was taken (``load_average``: before and after the run). When it is above ``--max-load``
(default 0.5, for 2 cores) before a run, run_all first waits, polling, up to ``--settle-s`` seconds (default
60) for it to drop; when a run still started above the threshold, the run is repeated (up to ``--retries``,
default 2; a failed run is not repeated) and the attempt started at the lowest load is kept. A figure kept
above the threshold is flagged (``above_max_load``; listed under ``above_max_load`` in the report). Note that
a run of a minute or more at 2 threads itself leaves the 1-minute load above 0.5 for about a minute.

Peak RSS figures that the scripts report themselves (any numeric key containing ``rss``) are collected
under ``peak_rss_mb``. The Markdown table lists the headline ratios first (keys with ``over``, ``ratio``,
``speedup``, ``per_alpha_over_exp``, ``within``), then the other headline figures (times, rates, memory),
each with the load average at which it was measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import _common  # noqa: E402

# Size options per script and mode. "default" keeps the whole run under ~15 min on 2 cores;
# "full" is each script's own defaults (nothing passed). Unknown scripts get no size options.
SIZES = {
    "bench_embed.py": {
        "quick": ["--n-images", "32", "--models", "tiny,ViT-B-32", "--batch-size", "32"],
        "default": ["--n-images", "128", "--models", "tiny,ViT-B-32"],
    },
    "bench_geometry.py": {
        "quick": ["--sizes", "5000"],
        "default": ["--sizes", "25000", "100000"],
    },
    "bench_conformity.py": {
        "quick": ["--n", "5000", "--big-n", "50000", "--repeats", "2"],
        "default": ["--n", "25000", "--big-n", "250000", "--repeats", "3"],
    },
    "bench_loss.py": {
        "quick": ["--n", "2000", "--big-n", "5000", "--repeats", "1", "--skip-default"],
        "default": ["--n", "5000", "--big-n", "10000", "--repeats", "2"],
    },
    "bench_contention.py": {
        "quick": ["--n", "2500", "--alphas", "5", "--repeats", "1"],  # >= 2,048 pairs: the threaded path
        "default": ["--n", "5000", "--alphas", "21", "--repeats", "2"],
    },
    "bench_dag.py": {
        "quick": ["--n-images", "1000", "--captions", "5003"],
        "default": ["--n-images", "5000", "--captions", "25014"],
    },
}
# Seconds each script may run, per mode (embedding runs ViT-B-32 on CPU, the loss benchmark an N x N
# float64 reference: the slowest two).
TIMEOUTS = {"quick": 300, "default": 420, "full": 3600}
TIMEOUT_SCALE = {"bench_embed.py": 1.5, "bench_loss.py": 2.0, "bench_contention.py": 1.5, "bench_dag.py": 3.0}


# ------------------------------------------------------------------ load average: wait, repeat, keep
@dataclass
class LoadPolicy:
    """When a figure counts as taken on a busy machine, and what run_all does about it."""

    max_load: float = 0.5  # 1-minute load average above which a figure is suspect
    settle_s: float = 60.0  # wait up to this long before a run for the load to drop
    retries: int = 2  # repeat a run started above max_load up to this many times
    poll_s: float = 5.0  # poll the load this often while waiting


def load_decision(loads_before: list, statuses: list, *, max_load: float, retries: int) -> tuple[bool, int]:
    """After the attempts so far of one figure: (run it again?, index of the attempt to keep).

    Again when the last attempt succeeded, every successful attempt started above `max_load` and fewer
    than 1 + `retries` attempts were made; a failed or timed-out attempt is not repeated (its cause is not
    the load), and an unknown load (None) never asks for a repeat. Kept: the successful attempt that
    started at the lowest load (the first of equals; unknown counts as highest); when none succeeded,
    the last attempt.
    """
    if not statuses:
        return True, -1
    ok = [i for i, s in enumerate(statuses) if s == "ok"]
    if not ok:
        return False, len(statuses) - 1
    keep = min(ok, key=lambda i: (math.inf if loads_before[i] is None else loads_before[i], i))
    above = all(loads_before[i] is not None and loads_before[i] > max_load for i in ok)
    again = statuses[-1] == "ok" and above and len(statuses) < 1 + retries
    return again, keep


def measure(run_once, policy: LoadPolicy | None, label: str, *, status=lambda r: r.get("status"), discard=None):
    """Run one figure under `policy`: settle, run, repeat while load_decision says so. Returns (the kept
    result, its load_average block). `discard(result)` is called on every attempt not kept."""
    attempts, results = [], []
    while True:
        if policy is None:
            before, waited = _common.load1(), 0.0
        else:
            if (_common.load1() or 0.0) > policy.max_load:
                print(
                    f"[run_all] {label}: load {_common.load1()} > {policy.max_load}; waiting up to "
                    f"{policy.settle_s:g}s",
                    file=sys.stderr,
                    flush=True,
                )
            before, waited = _common.settle(policy.max_load, policy.settle_s, policy.poll_s)
        res = run_once()
        results.append(res)
        attempts.append(
            {
                "load_1min_before": before,
                "load_1min_after": _common.load1(),
                "waited_s": waited,
                "status": status(res),
                "wall_s": res.get("wall_s") if isinstance(res, dict) else None,
            }
        )
        if policy is None:
            again, keep = False, 0
        else:
            again, keep = load_decision(
                [a["load_1min_before"] for a in attempts],
                [a["status"] for a in attempts],
                max_load=policy.max_load,
                retries=policy.retries,
            )
        if not again:
            break
        print(
            f"[run_all] {label}: started at load {before} > {policy.max_load}; repeating "
            f"({len(attempts)}/{policy.retries})",
            file=sys.stderr,
            flush=True,
        )
    if discard is not None:
        for i, r in enumerate(results):
            if i != keep:
                discard(r)
    kept = attempts[keep]
    block = {
        "load_1min": kept["load_1min_before"],
        "load_1min_after": kept["load_1min_after"],
        "waited_s": kept["waited_s"],
        "max_load": None if policy is None else policy.max_load,
        "above_max_load": bool(
            policy is not None and kept["load_1min_before"] is not None and kept["load_1min_before"] > policy.max_load
        ),
        "attempt_kept": keep + 1,
        "attempts": attempts,
    }
    return results[keep], block


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd, *, cwd=None, timeout=None):
    """Run cmd; returns (returncode or None on timeout, stdout, stderr, wall seconds, peak RSS MB of the
    largest process in its tree (ru_maxrss via wait4), or None)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=out, stderr=err, text=True, start_new_session=True)
        rc, rss = None, None
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                rc = os.waitstatus_to_exitcode(status)
                rss = ru.ru_maxrss / 1024.0  # kB on Linux
                proc.returncode = rc
                break
            if deadline is not None and time.perf_counter() > deadline:
                try:
                    os.killpg(proc.pid, 9)  # the session this call started, nothing else
                except ProcessLookupError:
                    pass
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return rc, out.read(), err.read(), wall, rss


def _help(script: Path) -> str | None:
    """The script's --help text (None when --help fails)."""
    rc, out, err, _, _ = _run([sys.executable, str(script), "--help"], timeout=120)
    return out + err if rc == 0 else None


def _has_option(help_text: str | None, flag: str) -> bool:
    return help_text is not None and re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def _supported(help_text: str | None, args: list[str]) -> tuple[list[str], list[str]]:
    """Keep the options of `args` that the script's --help mentions; return (kept, dropped)."""
    kept, dropped = [], []
    i = 0
    while i < len(args):
        flag = args[i]
        vals = []
        i += 1
        while i < len(args) and not args[i].startswith("--"):
            vals.append(args[i])
            i += 1
        if _has_option(help_text, flag):
            kept += [flag, *vals]
        else:
            dropped.append(flag)
    return kept, dropped


def _rss_figures(obj, path="") -> dict:
    """Every finite number under a key containing 'rss' (MB unless the key says kb/bytes)."""
    found = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "rss" in str(k).lower() and math.isfinite(v):
                found[p] = v
            else:
                found.update(_rss_figures(v, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found.update(_rss_figures(v, f"{path}[{i}]"))
    return found


def run_script(
    script: Path, mode: str, tmp: Path, policy: LoadPolicy | None = None, passed: dict | None = None
) -> dict:
    wanted = [] if mode == "full" else list(SIZES.get(script.name, {}).get(mode, []))
    help_text = _help(script)
    for flag, value in (passed or {}).items():
        if flag not in wanted:
            wanted += [flag, str(value)]
    args, dropped = _supported(help_text, wanted)
    dropped = [f for f in dropped if f not in (passed or {})]  # passed-through options are optional
    rec, load = measure(lambda: _run_script_once(script, mode, tmp, args, dropped, help_text), policy, script.name)
    rec["load_average"] = load
    return rec


def _run_script_once(script: Path, mode: str, tmp: Path, args: list, dropped: list, help_text) -> dict:
    out_json = tmp / f"{script.stem}.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), *args]
    help_ok = _has_option(help_text, "--out")
    if help_ok:
        cmd += ["--out", str(out_json)]
    timeout = int(TIMEOUTS[mode] * TIMEOUT_SCALE.get(script.name, 1.0))
    print(f"[run_all] {script.name} {' '.join(args)} (timeout {timeout}s)", file=sys.stderr, flush=True)
    rc, stdout, stderr, wall, rss = _run(cmd, cwd=REPO, timeout=timeout)
    rec = {
        "script": f"benchmarks/{script.name}",
        "args": args,
        "wall_s": round(wall, 3),
        "peak_rss_mb_process": None if rss is None else round(rss, 1),
    }
    if dropped:
        rec["options_not_supported"] = dropped
    if not help_ok:
        rec["note"] = "script has no --out option; JSON read from stdout"
    if rc is None:
        rec.update(status="timeout", error=f"killed after {timeout}s", stderr_tail=stderr[-2000:])
        return rec
    data = None
    if out_json.exists():
        try:
            data = json.loads(out_json.read_text())
        except json.JSONDecodeError:
            data = None
    if data is None:
        data = _json_from_stdout(stdout)
    if rc != 0:
        rec.update(status="failed", returncode=rc, stderr_tail=stderr[-2000:])
    elif data is None:
        rec.update(status="failed", returncode=rc, error="no JSON on --out or stdout", stderr_tail=stderr[-2000:])
    else:
        rec["status"] = "ok"
    if data is not None:
        rec["result"] = data
        rss_found = _rss_figures(data)
        if rss_found:
            rec["peak_rss_mb"] = rss_found
    return rec


def _json_from_stdout(text: str):
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = text.find("{")
    while start != -1:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None


def _job_benchmarks(workdir: Path) -> dict:
    """Snakemake's benchmark: files of the demo, per rule: jobs, summed seconds, max of max_rss (MB)."""
    per_rule: dict[str, dict] = {}
    for tsv in sorted(workdir.glob("results/**/benchmarks/*.tsv")):
        rule = re.sub(r"_\d+(-of-\d+)?$", "", tsv.stem)
        with open(tsv, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                r = per_rule.setdefault(rule, {"jobs": 0, "seconds": 0.0, "max_rss_mb": 0.0})
                r["jobs"] += 1
                try:
                    r["seconds"] += float(row.get("s", "nan"))
                    rss = float(row.get("max_rss", "nan"))
                    if math.isfinite(rss):
                        r["max_rss_mb"] = max(r["max_rss_mb"], rss)
                except ValueError:
                    pass
    for r in per_rule.values():
        r["seconds"] = round(r["seconds"], 3)
        r["max_rss_mb"] = round(r["max_rss_mb"], 1)
    return per_rule


def _demo_once(cores: int, timeout: int) -> dict:
    """The demo end to end in a fresh scratch directory (left in place: rec["_scratch"])."""
    scratch = Path(tempfile.mkdtemp(prefix="clipgeom-demo-bench-"))
    base = _demo_cmd(scratch, cores)
    print(f"[run_all] demo end to end in {scratch} (--cores {cores})", file=sys.stderr, flush=True)
    rc, out, err, wall, rss = _run(base, cwd=scratch, timeout=timeout)
    log = out + err
    rec = {
        "cores": cores,
        "scratch_dir": "fresh temporary directory",
        "wall_s": round(wall, 2),
        "peak_rss_mb_largest_process": None if rss is None else round(rss, 1),
        "_scratch": str(scratch),
    }
    m = re.search(r"(\d+) of (\d+) steps \(100%\) done", log)
    rec["jobs"] = int(m.group(2)) if m else None
    if rc != 0:
        rec.update(status="timeout" if rc is None else "failed", returncode=rc, log_tail=log[-3000:])
        return rec
    rec["status"] = "ok"
    per_rule = _job_benchmarks(scratch)
    rec["per_rule"] = per_rule
    if per_rule:
        rec["peak_rss_mb_jobs"] = max(r["max_rss_mb"] for r in per_rule.values())
    return rec


def _demo_cmd(scratch: Path, cores: int) -> list:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(scratch),
        "--configfile",
        str(REPO / "config" / "demo.yaml"),
        "--cores",
        str(cores),
    ]


def _noop_once(scratch: Path, cores: int) -> dict:
    rc2, out2, err2, wall2, _ = _run(_demo_cmd(scratch, cores), cwd=scratch, timeout=600)
    noop = {
        "wall_s": round(wall2, 2),
        "nothing_to_be_done": "Nothing to be done" in out2 + err2,
        "status": "ok" if rc2 == 0 else "failed",
    }
    if rc2 != 0 or not noop["nothing_to_be_done"]:
        noop["log_tail"] = (out2 + err2)[-3000:]
    return noop


def run_demo(cores: int, timeout: int, keep: Path | None = None, policy: LoadPolicy | None = None) -> dict:
    """The offline demo in a fresh scratch directory, then the no-op rerun (each a figure under `policy`:
    a repeated end-to-end run starts in a fresh directory; the no-op reruns use the kept one's)."""
    rec, load = measure(
        lambda: _demo_once(cores, timeout),
        policy,
        "demo",
        discard=lambda r: shutil.rmtree(r["_scratch"], ignore_errors=True),
    )
    scratch = Path(rec.pop("_scratch"))
    rec["load_average"] = load
    try:
        if rec["status"] != "ok":
            return {"end_to_end": rec}
        noop, noop_load = measure(
            lambda: _noop_once(scratch, cores),
            policy,
            "demo no-op rerun",
            status=lambda r: "ok" if r["status"] == "ok" and r["nothing_to_be_done"] else "failed",
        )
        noop["load_average"] = noop_load
        return {"end_to_end": rec, "noop_rerun": noop}
    finally:
        if keep is not None:
            shutil.copytree(scratch, keep, dirs_exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------ Markdown
_INTERESTING = re.compile(r"(seconds|_s$|^s$|wall|per_s|rate|throughput|rss|speedup|ratio|_mb$)", re.I)
_SKIP = re.compile(
    r"(_all$|load_average|machine|^n$|^d$|spot_check|agree|max_abs|mean_conformity|file_mb|"
    r"full_array|after_imports|threads|workers|batch_size|cpus|cpu_s|^user_s$|^sys_s$|"
    r"ru_maxrss|_cpu$)",
    re.I,
)


_HEADLINE = re.compile(r"(over|ratio|speedup|per_alpha_over_exp|within)", re.I)


def _is_figure(k, v) -> bool:
    """An interesting number (times, rates, memory, ratios) of a benchmark's JSON."""
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and bool(_INTERESTING.search(str(k)))
        and not _SKIP.search(str(k))
    )


def _is_headline(k, v) -> bool:
    """A ratio or a pass flag (key with over/ratio/speedup/per_alpha_over_exp/within): the table's first rows."""
    if not _HEADLINE.search(str(k)) or re.search(r"load_average|machine", str(k), re.I):
        return False
    return isinstance(v, bool) or (isinstance(v, (int, float)) and math.isfinite(v))


def _leaf_rows(obj, labels=(), key_path=(), keep=_is_figure):
    """(case label, metric key, value) for the leaves of a benchmark's JSON that `keep(key, value)` accepts."""
    rows = []
    if isinstance(obj, dict):
        here = [
            str(v)
            for k, v in obj.items()
            if isinstance(v, str)
            and k in ("model", "stage", "mode", "name", "label", "case", "method_label", "size", "n_rows")
        ]
        nums = {
            k: v
            for k, v in obj.items()
            if (k in ("n", "rows", "size", "N") or k.startswith("n_"))
            and isinstance(v, int)
            and not isinstance(v, bool)
        }
        lab = list(labels) + here + [f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in nums.items()]
        for k, v in obj.items():
            if k in ("load_average", "machine"):
                continue
            if isinstance(v, (dict, list)):
                rows += _leaf_rows(v, lab, key_path + (str(k),), keep)
            elif keep(k, v):
                where = [p for p in key_path[-1:] if p not in ("results", "stages")]
                rows.append((", ".join(dict.fromkeys([*where, *lab])), str(k), v))
    elif isinstance(obj, list):
        for v in obj:
            rows += _leaf_rows(v, labels, key_path, keep)
    return rows


def _load_cell(rec: dict | None) -> str:
    """The load average a figure was measured at, flagged when it was still above the threshold."""
    la = (rec or {}).get("load_average") or {}
    v = la.get("load_1min")
    if v is None:
        return "–"
    cell = f"{v:.2f}"
    if la.get("above_max_load"):
        cell += f" **(> {la['max_load']:g})**"
    return cell


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, int):
        return f"{v:,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01 or a == 0:
        return f"{v:.3f}"
    return f"{v:.2e}"


def _case(case, rec) -> str:
    return case or ("`" + " ".join(rec["args"]) + "`" if rec["args"] else "–")


def markdown(report: dict, max_rows_per_bench: int = 40) -> str:
    m = report["machine"]
    pol = report.get("load_policy") or {}
    lines = [
        f"Measured on {m['cpus']} CPU cores ({m['cpu']}), GPU: {m['gpu'] or 'none'}, "
        f"{report['date']}; `python benchmarks/run_all.py{' --quick' if report['mode'] == 'quick' else ''}`"
        f"{' --full' if report['mode'] == 'full' else ''}."
        + (
            f" Load: the 1-minute load average when the figure's run started (flagged above {pol['max_load']:g})."
            if pol
            else ""
        ),
        "",
        "| benchmark | case | figure | value | load |",
        "|---|---|---|---|---|",
    ]
    ok = [
        (Path(rec["script"]).stem.replace("bench_", ""), rec) for rec in report["benchmarks"] if rec["status"] == "ok"
    ]

    def source(rec):  # a script's own "summary" block, when it has one, is its headline
        result = rec.get("result", {})
        return result["summary"] if isinstance(result.get("summary"), dict) else result

    headline_keys = {}
    for name, rec in ok:  # ratios and pass flags first
        rows = _leaf_rows(source(rec), keep=_is_headline)
        headline_keys[name] = {k for _, k, _ in rows}
        for case, key, v in rows[:max_rows_per_bench]:
            lines.append(f"| {name} | {_case(case, rec)} | {key} | {_fmt(v)} | {_load_cell(rec)} |")
    demo = report.get("demo", {})
    e2e = demo.get("end_to_end")
    if e2e:
        if e2e.get("status") == "ok":
            lines.append(
                f"| demo (`--cores {e2e['cores']}`) | fresh directory, {e2e.get('jobs')} jobs | "
                f"end-to-end wall time (s) | {_fmt(e2e['wall_s'])} | {_load_cell(e2e)} |"
            )
            if e2e.get("peak_rss_mb_jobs") is not None:
                lines.append(
                    f"| demo | largest job (Snakemake `benchmark:`) | peak RSS (MB) | "
                    f"{_fmt(e2e['peak_rss_mb_jobs'])} | {_load_cell(e2e)} |"
                )
        else:
            lines.append(f"| demo | end to end | status | **{e2e.get('status')}** | {_load_cell(e2e)} |")
    noop = demo.get("noop_rerun")
    if noop:
        lines.append(
            f"| demo | no-op rerun ({'Nothing to be done' if noop['nothing_to_be_done'] else 'JOBS RAN'}) "
            f"| wall time (s) | {_fmt(noop['wall_s'])} | {_load_cell(noop)} |"
        )
    for rec in report["benchmarks"]:
        name = Path(rec["script"]).stem.replace("bench_", "")
        if rec["status"] != "ok":
            lines.append(f"| {name} | `{' '.join(rec['args'])}` | status | **{rec['status']}** | {_load_cell(rec)} |")
            continue
        rows = [r for r in _leaf_rows(source(rec)) if r[1] not in headline_keys.get(name, ())]
        for case, key, v in rows[:max_rows_per_bench]:
            lines.append(f"| {name} | {_case(case, rec)} | {key} | {_fmt(v)} | {_load_cell(rec)} |")
        if len(rows) > max_rows_per_bench:
            lines.append(f"| {name} | … | {len(rows) - max_rows_per_bench} more in the JSON | | |")
        lines.append(f"| {name} | whole script | wall time (s) | {_fmt(rec['wall_s'])} | {_load_cell(rec)} |")
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/benchmarks/benchmarks.json", help="the JSON with every figure")
    ap.add_argument("--markdown", default=None, help="also write a Markdown table here (for the README)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes: a few minutes in all")
    size.add_argument("--full", action="store_true", help="each script's own (paper-scale) defaults: long")
    ap.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help="run only these benchmarks (embed, geometry, loss, conformity, contention, dag, demo)",
    )
    ap.add_argument("--no-demo", action="store_true", help="skip the demo end-to-end and no-op rerun timing")
    ap.add_argument(
        "--cores",
        type=int,
        default=os.cpu_count() or 1,
        help="--cores of the demo run (and of scripts with a --cores option: bench_dag.py)",
    )
    ap.add_argument("--demo-timeout", type=int, default=1800)
    ap.add_argument(
        "--max-load",
        type=float,
        default=0.5,
        help="1-minute load average above which a figure counts as taken on a busy machine",
    )
    ap.add_argument(
        "--settle-s",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for the load to drop to --max-load",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a run that started above --max-load up to this many times (keep the lowest load)",
    )
    ap.add_argument("--poll-s", type=float, default=5.0, help="seconds between load-average polls while waiting")
    a = ap.parse_args(argv)
    policy = LoadPolicy(max_load=a.max_load, settle_s=a.settle_s, retries=max(0, a.retries), poll_s=a.poll_s)
    mode = "quick" if a.quick else "full" if a.full else "default"
    import torch

    report = {
        "benchmark": "all",
        "mode": mode,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_name(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_start": _common.loadavg(),
        },
        "load_policy": {
            "max_load": policy.max_load,
            "settle_s": policy.settle_s,
            "retries": policy.retries,
            "poll_s": policy.poll_s,
            "load": "1-minute load average (os.getloadavg()[0])",
        },
        "benchmarks": [],
    }
    t0 = time.perf_counter()
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if a.only:
        scripts = [s for s in scripts if s.stem.replace("bench_", "") in a.only]
    with tempfile.TemporaryDirectory(prefix="clipgeom-bench-") as tmp:
        for s in scripts:
            rec = run_script(s, mode, Path(tmp), policy, passed={"--cores": a.cores})
            print(
                f"[run_all] {s.name}: {rec['status']} in {rec['wall_s']:.1f}s at load "
                f"{rec['load_average']['load_1min']}",
                file=sys.stderr,
                flush=True,
            )
            report["benchmarks"].append(rec)
    if not a.no_demo and (a.only is None or "demo" in a.only):
        report["demo"] = run_demo(a.cores, a.demo_timeout, policy=policy)
    report["peak_rss_mb"] = {
        Path(r["script"]).stem: {
            "largest_reported": max(
                (v for k, v in (r.get("peak_rss_mb") or {}).items() if "after_imports" not in k), default=None
            ),
            "script_process_tree": r.get("peak_rss_mb_process"),
        }
        for r in report["benchmarks"]
    }
    if "demo" in report:
        report["peak_rss_mb"]["demo"] = report["demo"]["end_to_end"].get("peak_rss_mb_jobs")
    report["failures"] = [r["script"] for r in report["benchmarks"] if r["status"] != "ok"]
    if "demo" in report and report["demo"]["end_to_end"].get("status") != "ok":
        report["failures"].append("demo")
    report["above_max_load"] = [
        r["script"] for r in report["benchmarks"] if r.get("load_average", {}).get("above_max_load")
    ]
    for fig in ("end_to_end", "noop_rerun"):
        if report.get("demo", {}).get(fig, {}).get("load_average", {}).get("above_max_load"):
            report["above_max_load"].append(f"demo.{fig}")
    report["machine"]["loadavg_end"] = _common.loadavg()
    report["total_wall_s"] = round(time.perf_counter() - t0, 1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(md)
    print(md)
    print(
        f"[run_all] wrote {out} in {report['total_wall_s']}s; failures: {report['failures'] or 'none'}; "
        f"above load {policy.max_load:g}: {report['above_max_load'] or 'none'}",
        file=sys.stderr,
    )
    return report


if __name__ == "__main__":
    main()
