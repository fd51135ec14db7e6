"""The benchmark harness: bench_contention.py at a tiny size (a smoke test, ~20 s on 2 idle cores) and
run_all.py's load-average logic (wait, repeat, keep the lowest load, flag) as pure functions."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_all():
    return _load("run_all")


@pytest.fixture(scope="module")
def common():
    return _load("_common")


# ------------------------------------------------------------------ bench_contention.py, tiny
def test_contention_smoke(tmp_path):
    out = tmp_path / "contention.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_contention.py"),
            "--n",
            "600",
            "--alphas",
            "3",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert json.loads(r.stdout) == data  # the same object on stdout
    assert set(data["arms"]) == {"alone", "contended", "contended_active"}
    for name, arm in data["arms"].items():
        for key in ("sweep_wall_s", "sweep_cpu_s", "cold_sweep_wall_s", "process_wall_s", "process_cpu_s"):
            assert math.isfinite(arm[key]) and arm[key] > 0, (name, key, arm[key])
        assert arm["finite"] is True
        assert arm["load_1min_before"] is None or arm["load_1min_before"] >= 0
        assert len(arm["runs"]) == 1
        assert arm["env"]["OMP_NUM_THREADS"] == "2"  # the job's environment (Snakemake's thread variables)
    assert data["arms"]["contended_active"]["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert data["arms"]["contended_active"]["confine_threads_called"] is False
    remedied = data["arms"]["alone"]
    assert remedied["confine_threads_called"] or remedied["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert data["arms"]["contended"]["busy_cpu_s"] > 0
    s = data["summary"]
    for key in (
        "cpu_contended_over_alone",
        "wall_contended_over_alone",
        "cpu_active_over_alone",
        "wall_active_over_alone",
    ):
        assert math.isfinite(s[key]) and s[key] > 0, (key, s[key])
    assert isinstance(s["cpu_within_1.3x"], bool) and isinstance(s["wall_within_2.3x"], bool)
    assert data["machine"]["cpu_count"] == os.cpu_count() and data["machine"]["platform"]
    assert data["n"] == 600 and data["n_alpha"] == 3 and data["threads"] == 2


# ------------------------------------------------------------------ run_all.py: the load decision
@pytest.mark.parametrize(
    "loads, statuses, retries, expected",
    [
        ([], [], 2, (True, -1)),  # nothing run yet
        ([0.2], ["ok"], 2, (False, 0)),  # quiet: keep it
        ([0.9], ["ok"], 2, (True, 0)),  # busy: again
        ([0.9, 0.3], ["ok", "ok"], 2, (False, 1)),  # the repeat was quiet: keep it
        ([0.9, 0.7, 0.8], ["ok", "ok", "ok"], 2, (False, 1)),  # retries spent: keep the lowest load
        ([0.9, 0.9], ["ok", "ok"], 2, (True, 0)),  # equal loads: the first is kept
        ([0.9], ["ok"], 0, (False, 0)),  # --retries 0: never again
        ([0.9], ["failed"], 2, (False, 0)),  # a failure is not the load's doing
        ([0.9], ["timeout"], 2, (False, 0)),
        ([0.9, 0.1], ["ok", "failed"], 2, (False, 0)),  # the failed repeat is not kept
        ([0.9, 0.8], ["failed", "ok"], 2, (True, 1)),
        ([None], ["ok"], 2, (False, 0)),  # no load average: no repeat
        ([None, 0.7], ["ok", "ok"], 2, (False, 1)),  # a known load beats an unknown one
        ([0.5], ["ok"], 2, (False, 0)),  # at the threshold counts as quiet
    ],
)
def test_load_decision(run_all, loads, statuses, retries, expected):
    assert run_all.load_decision(loads, statuses, max_load=0.5, retries=retries) == expected


class FakeClock:
    def __init__(self, loads):
        self.t, self.loads, self.sleeps = 0.0, list(loads), []

    def clock(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s

    def getload(self):
        return self.loads.pop(0) if len(self.loads) > 1 else self.loads[0]


def test_settle_waits_until_quiet(common):
    c = FakeClock([0.9, 0.8, 0.4, 0.1])
    load, waited = common.settle(0.5, 60, 5, getload=c.getload, sleep=c.sleep, clock=c.clock)
    assert (load, waited, c.sleeps) == (0.4, 10.0, [5, 5])


def test_settle_gives_up_after_settle_s(common):
    c = FakeClock([0.9])
    load, waited = common.settle(0.5, 12, 5, getload=c.getload, sleep=c.sleep, clock=c.clock)
    assert (load, waited, c.sleeps) == (0.9, 12.0, [5, 5, 2])


def test_settle_quiet_or_unknown_does_not_wait(common):
    for loads in ([0.3], [None]):
        c = FakeClock(loads)
        assert common.settle(0.5, 60, 5, getload=c.getload, sleep=c.sleep, clock=c.clock) == (loads[0], 0.0)
        assert c.sleeps == []


def test_measure_repeats_and_keeps_lowest(run_all, monkeypatch):
    before = iter([0.9, 0.6, 0.7])
    monkeypatch.setattr(run_all._common, "settle", lambda *a, **k: (next(before), 3.0))
    monkeypatch.setattr(run_all._common, "load1", lambda: 1.5)
    runs, discarded = [], []

    def once():
        runs.append(len(runs))
        return {"status": "ok", "wall_s": 10.0 + len(runs)}

    policy = run_all.LoadPolicy(max_load=0.5, settle_s=60, retries=2)
    rec, load = run_all.measure(once, policy, "x", discard=discarded.append)
    assert runs == [0, 1, 2] and rec["wall_s"] == 12.0
    assert discarded == [{"status": "ok", "wall_s": 11.0}, {"status": "ok", "wall_s": 13.0}]
    assert load["load_1min"] == 0.6 and load["above_max_load"] is True and load["attempt_kept"] == 2
    assert [a["load_1min_before"] for a in load["attempts"]] == [0.9, 0.6, 0.7]


def test_measure_quiet_runs_once(run_all, monkeypatch):
    monkeypatch.setattr(run_all._common, "settle", lambda *a, **k: (0.2, 0.0))
    monkeypatch.setattr(run_all._common, "load1", lambda: 0.4)
    rec, load = run_all.measure(lambda: {"status": "ok", "wall_s": 1.0}, run_all.LoadPolicy(), "x")
    assert load["above_max_load"] is False and len(load["attempts"]) == 1 and load["load_1min_after"] == 0.4


def test_markdown_ratios_first_with_load(run_all):
    la = {"load_1min": 0.8, "load_1min_after": 1.0, "max_load": 0.5, "above_max_load": True}
    report = {
        "machine": {"cpus": 2, "cpu": "x", "gpu": None},
        "date": "today",
        "mode": "quick",
        "load_policy": {"max_load": 0.5},
        "benchmarks": [
            {
                "script": "benchmarks/bench_loss.py",
                "args": [],
                "status": "ok",
                "wall_s": 5.0,
                "load_average": la,
                "result": {"summary": {"fast_seconds_per_alpha": 0.05, "speedup_vs_direct": 30.0}},
            },
            {
                "script": "benchmarks/bench_contention.py",
                "args": [],
                "status": "ok",
                "wall_s": 9.0,
                "load_average": dict(la, load_1min=0.2, above_max_load=False),
                "result": {
                    "summary": {"alone_sweep_wall_s": 1.0, "cpu_contended_over_alone": 1.1, "wall_within_2.3x": True}
                },
            },
        ],
        "demo": {
            "end_to_end": {
                "status": "ok",
                "cores": 2,
                "jobs": 40,
                "wall_s": 60.0,
                "load_average": dict(la, load_1min=0.3, above_max_load=False),
            }
        },
    }
    rows = [r for r in run_all.markdown(report).splitlines() if r.startswith("| ") and "---" not in r][1:]
    figures = [r.split("|")[3].strip() for r in rows]
    assert figures[:3] == ["speedup_vs_direct", "cpu_contended_over_alone", "wall_within_2.3x"]
    assert "end-to-end wall time (s)" in figures[3]
    assert figures.count("speedup_vs_direct") == 1  # not repeated below
    loss_rows = [r for r in rows if r.startswith("| loss ")]
    assert loss_rows and all("0.80 **(> 0.5)**" in r for r in loss_rows)
    assert all(r.rstrip().endswith("| 0.20 |") for r in rows if r.startswith("| contention "))
    assert "| yes |" in rows[2]
