"""Where a job's messages go (its log under Snakemake, also stderr by hand), the progress lines in the log,
and the checked COCO download (size and sha256, known or recorded at the first download)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from workflow_utils import SNAKEMAKE, snakemake_env

from clipgeom import data
from clipgeom import progress as pg
from clipgeom.hashing import sha256_file


# ------------------------------------------------------------------ the progress line
class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_lines_are_throttled_and_carry_rate_and_eta(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(pg.time, "perf_counter", clock)
    out = io.StringIO()
    bar = pg.Progress(1000, "alpha sweep", "rows", out)
    for _ in range(1000):  # one row every 10 ms: 10 s in all
        clock.t += 0.01
        bar.update(1)
    rate = bar.close()
    lines = out.getvalue().splitlines()
    assert rate == pytest.approx(100.0)
    # the first line, one every >= 2 s (and >= 5%), the last: 1 + 5 + 1
    assert 3 <= len(lines) <= 7, lines
    assert "alpha sweep:   0%|" in lines[0] and "0/1000 rows" in lines[0]
    mid = lines[1]
    assert "20%|####" in mid and "200/1000 rows" in mid and "[00:02<00:08, 100 rows/s]" in mid, mid
    assert lines[-1].endswith("1000/1000 rows [00:10, 100 rows/s] done"), lines[-1]
    assert "\r" not in out.getvalue()


def test_progress_in_bytes_and_without_a_total(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(pg.time, "perf_counter", clock)
    out = io.StringIO()
    bar = pg.Progress(800e6, "download val2017.zip", "B", out)
    clock.t += 4.0
    bar.update(200e6)
    assert "200.0 MB/800.0 MB [00:04<00:12, 50.0 MB/s]" in out.getvalue().splitlines()[-1]
    out = io.StringIO()
    bar = pg.Progress(None, "merge", "shards", out)
    clock.t += 3.0
    bar.update(2)
    assert out.getvalue().splitlines()[-1].endswith("merge: 2 shards [00:03, 0.667 shards/s]")


def test_progress_stream_defaults_to_the_job_log(tmp_path):
    import logging

    from clipgeom.scripting import log_stream

    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(tmp_path / "job.log", mode="w")
    root.handlers = [handler]
    try:
        assert log_stream() is handler.stream
        pg.Progress(3, "conformity: rows read", "rows").close()
    finally:
        root.handlers = saved
        handler.close()
    assert "conformity: rows read:   0%|" in (tmp_path / "job.log").read_text()


# ------------------------------------------------------------------ where the log goes
_JOB = """
import logging, sys, types
{preamble}
from clipgeom.scripting import setup_logging, log_stream
from clipgeom.progress import Progress
job = types.SimpleNamespace(log={log!r})
log = setup_logging(job)
log.info("a message of the job")
bar = Progress(2, "work", "items", log_stream(job))
bar.update(2)
bar.close()
raise ValueError("the job failed here")
"""


@pytest.mark.parametrize("under_snakemake", [True, False], ids=["snakemake", "by-hand"])
def test_job_logs_to_its_file_and_to_stderr_only_by_hand(tmp_path, under_snakemake):
    log = tmp_path / "job.log"
    preamble = "__real_file__ = __file__" if under_snakemake else ""
    script = tmp_path / "job.py"
    script.write_text(_JOB.format(preamble=preamble, log=[str(log)]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    text = log.read_text()
    for what in ("a message of the job", "work: 100%", "ValueError: the job failed here", "Traceback"):
        assert what in text, (what, text)
    if under_snakemake:
        assert proc.stderr == "", proc.stderr
    else:
        assert "a message of the job" in proc.stderr and "ValueError: the job failed here" in proc.stderr


def test_job_without_a_log_logs_to_stderr(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(_JOB.format(preamble="__real_file__ = __file__", log=[]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert "a message of the job" in proc.stderr and "work: 100%" in proc.stderr
    assert "ValueError: the job failed here" in proc.stderr


def test_snakemake_terminal_shows_job_lines_not_job_logs(tmp_path):
    """A real Snakemake run: the job's messages and progress land in its log only; a failed job's log holds
    the error, and the terminal names that log."""
    (tmp_path / "job.py").write_text(
        textwrap.dedent(
            """
            from clipgeom.progress import Progress
            from clipgeom.scripting import get_job, log_stream, setup_logging

            job = get_job(__file__)
            log = setup_logging(job)
            log.info("message from job %s", job.wildcards.name)
            with Progress(3, "steps", "steps", log_stream(job)) as bar:
                bar.update(3)
            if job.wildcards.name == "bad":
                raise RuntimeError("this job breaks")
            open(job.output[0], "w").write("ok")
            """
        )
    )
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule all:
                input: "out/good.txt", "out/bad.txt"

            rule job:
                output: "out/{name}.txt"
                log: "logs/{name}.log"
                script: "job.py"
            """
        )
    )
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", "-k", "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        env=snakemake_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode != 0
    terminal = proc.stdout + proc.stderr
    assert "message from job" not in terminal and "steps:" not in terminal, terminal[-3000:]
    assert "logs/bad.log" in terminal  # Snakemake names the failed job's log
    good, bad = (tmp_path / "logs/good.log").read_text(), (tmp_path / "logs/bad.log").read_text()
    assert "message from job good" in good and "steps: 100%|" in good
    assert "RuntimeError: this job breaks" in bad and "Traceback" in bad


# ------------------------------------------------------------------ the checked download
def _archive(path: Path, size: int = 300_000) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


def test_download_records_size_and_sha256_then_checks_reuse(tmp_path):
    src = _archive(tmp_path / "mirror.zip")
    dest = tmp_path / "data" / "mirror.zip"
    out = io.StringIO()
    data.download(src.as_uri(), dest, "a test archive", progress=out)
    assert dest.read_bytes() == src.read_bytes()
    rec = json.loads(data.checksum_sidecar(dest).read_text())
    assert rec["bytes"] == src.stat().st_size and rec["sha256"] == sha256_file(src)
    assert rec["source"] == "first download"
    assert "download mirror.zip: 100%|####################| 299.8 kB/299.8 kB [" in out.getvalue()
    # reused, checked against the record
    data.download("http://nowhere.invalid/mirror.zip", dest, "a test archive", progress=io.StringIO())
    # damaged since: an error naming the file, and the file is left where it is (the user's data)
    dest.write_bytes(dest.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(data.DataError, match=r"mirror\.zip: this a test archive does not match its checksum"):
        data.download("http://nowhere.invalid/mirror.zip", dest, "a test archive", progress=io.StringIO())
    assert dest.exists()


def test_download_against_the_known_checksum(tmp_path, monkeypatch):
    src = _archive(tmp_path / "val2017.zip")
    dest = tmp_path / "coco" / "val2017.zip"
    # the real archive's known values: a different file is refused and nothing is kept
    with pytest.raises(data.DataError, match=r"val2017\.zip: the COCO images downloaded from .* expected 815,585,330"):
        data.download(src.as_uri(), dest, "COCO images", progress=io.StringIO())
    assert not dest.exists() and not dest.with_name("val2017.zip.part").exists()
    assert not data.checksum_sidecar(dest).exists()
    # with this file's values as the known ones, it passes and its record says so
    monkeypatch.setitem(data.KNOWN_ARCHIVES, "val2017.zip", (src.stat().st_size, sha256_file(src)))
    data.download(src.as_uri(), dest, "COCO images", progress=io.StringIO())
    assert json.loads(data.checksum_sidecar(dest).read_text())["source"] == "the known checksum of COCO's val2017.zip"


def test_known_coco_archives():
    assert data.KNOWN_ARCHIVES["val2017.zip"][0] == 815_585_330
    assert data.KNOWN_ARCHIVES["annotations_trainval2017.zip"][0] == 252_907_541
    assert all(len(sha) == 64 for _, sha in data.KNOWN_ARCHIVES.values())
