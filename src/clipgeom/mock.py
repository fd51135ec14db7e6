"""The real Snakemake job of one rule, built from the workflow without running it.

Like PyPSA-Eur's ``mock_snakemake``: :func:`mock_snakemake` loads the workflow through Snakemake's own
Python API (``SnakemakeApi`` → ``workflow`` → ``dag``) — the ``Snakefile`` beside this package (found
from the package's or a script's path, never the working directory), the config (``config/config.yaml``
unless a configfile is given, ``--config``-style overrides on top), the schema validation and defaults of
``rules/common.smk`` — and asks Snakemake's DAG for the one job of ``rule`` with the given wildcards,
exactly as ``snakemake --target-jobs rule:dataset=...,model=...`` would. Nothing else runs: no input
is made, no output checked for freshness, nothing written under ``.snakemake/``.

The result is the same :class:`snakemake.script.Snakemake` object a ``script:`` job receives: resolved
``input``, ``output``, ``params`` (param functions evaluated), ``wildcards``, ``threads``, ``resources``,
``log``, ``config`` and ``rule``. Its paths are relative to the working directory, as in a real run::

    from clipgeom.mock import mock_snakemake

    job = mock_snakemake("thin_shell", configfile="config/demo.yaml", dataset="demo", model="tiny-a")
    job.input.embeddings     # 'results/demo/tiny-a/embeddings.h5'
    job.params.p["hist_bins"]  # the schema default, 60

The workflow scripts use it when run by hand (``python workflow/scripts/<rule>.py --help``; see
:mod:`clipgeom.scripting`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

DEFAULT_CONFIG = Path("config") / "config.yaml"


class MockError(Exception):
    """The job cannot be built (unknown rule, wrong wildcards, a config error); the message says why."""


def repository_root(start: str | os.PathLike | None = None) -> Path:
    """The checkout holding the workflow: the first folder above ``start`` (a script's path), else above
    this package, with a ``Snakefile`` and ``rules/common.smk``."""
    places = []
    if start is not None:
        places += list(Path(start).resolve().parents)
    places += list(Path(__file__).resolve().parents)
    for d in places:
        if (d / "Snakefile").is_file() and (d / "rules" / "common.smk").is_file():
            return d
    raise MockError(
        f"no Snakefile with rules/common.smk above {start or __file__}: "
        "run the scripts of a checkout of the workflow (pip install -e <checkout>)"
    )


def available_cores() -> int:
    from snakemake.utils import available_cpu_count

    return max(1, int(available_cpu_count()))


@contextlib.contextmanager
def open_workflow(
    configfile: str | os.PathLike | None = None,
    config_overrides: Mapping | None = None,
    *,
    snakefile: str | os.PathLike | None = None,
    cores: int | None = None,
    quiet: bool = True,
) -> Iterator:
    """The parsed workflow (a ``snakemake.workflow.Workflow``), config validated and defaults filled.

    ``configfile`` defaults to the workflow's ``config/config.yaml``; ``config_overrides`` is a (nested)
    mapping merged on top, like ``snakemake --config``. ``cores`` is ``--cores`` (default: every CPU
    core). Relative paths resolve against the working directory.
    Valid only inside the ``with`` block (Snakemake's API context).
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    snakefile = Path(snakefile).resolve() if snakefile else repository_root() / "Snakefile"
    if configfile is None:
        configfile = snakefile.parent / DEFAULT_CONFIG
    configfile = Path(configfile)
    if not configfile.is_file():
        raise MockError(f"config file not found: {configfile}")
    output = OutputSettings(enable_file_logging=False, quiet={Quietness.ALL} if quiet else None)
    with SnakemakeApi(output) as api:
        try:
            workflow_api = api.workflow(
                resource_settings=ResourceSettings(cores=cores or available_cores()),
                config_settings=ConfigSettings(config=dict(config_overrides or {}), configfiles=[configfile]),
                snakefile=snakefile,
            )
            dag_api = workflow_api.dag(DAGSettings())
            workflow = dag_api.workflow_api._workflow  # Snakefile included: config validated, rules defined
        except MockError:
            raise
        except Exception as e:  # a config or Snakefile error: Snakemake's own message
            raise MockError(f"the workflow does not load with config {configfile}: {e}") from e
        yield workflow


def script_path(rule) -> Path | None:
    """The absolute path of a rule's ``script:`` (None for a rule without one)."""
    script = getattr(rule, "script", None)
    if not script:
        return None
    p = Path(str(script))
    return (p if p.is_absolute() else Path(rule.snakefile).parent / p).resolve()


def rules_running(workflow, script: str | os.PathLike) -> list:
    """The rules whose ``script:`` is ``script`` (usually one; a rule defined per dataset or model,
    such as ``download_<dataset>`` or ``random_weights_<model>``, gives one per config entry)."""
    target = Path(script).resolve()
    return [r for r in workflow.rules if script_path(r) == target]


def get_rule(workflow, name: str):
    try:
        return workflow.get_rule(name)
    except Exception:
        names = ", ".join(sorted(r.name for r in workflow.rules))
        raise MockError(f"no rule {name!r} in the workflow (rules: {names})") from None


def _constraints(workflow, rule) -> dict:
    out = dict(workflow.wildcard_constraints or {})
    out.update(rule.wildcard_constraints or {})
    return {k: v for k, v in out.items() if k in rule.wildcard_names}


def build_job(workflow, rule, wildcards: Mapping[str, str], threads: int | None = None):
    """Snakemake's job (``snakemake.jobs.Job``) of ``rule`` for ``wildcards``, made by the DAG as for
    ``--target-jobs``. Checks the wildcard names and the rule's wildcard constraints. ``threads``
    overrides the rule's threads as ``--set-threads`` does (before they are capped at the cores)."""
    from snakemake.dag import DAG
    from snakemake.resources import Resource

    if threads:
        rule.resources["_cores"] = Resource("_cores", int(threads))  # what --set-threads does at rule definition

    wildcards = {k: str(v) for k, v in wildcards.items()}
    need, got = set(rule.wildcard_names), set(wildcards)
    if need != got:
        parts = []
        if need - got:
            parts.append("missing " + ", ".join(sorted(need - got)))
        if got - need:
            parts.append("unknown " + ", ".join(sorted(got - need)))
        wanted = " ".join(f"{w}=..." for w in sorted(need)) or "none"
        raise MockError(f"rule {rule.name} takes the wildcards {wanted}; {'; '.join(parts)}")
    dag = DAG(workflow, rules=[rule], ignore_incomplete=True)
    try:
        job = workflow.async_run(dag.new_job(rule, wildcards_dict=wildcards or None))
    except Exception as e:
        raise MockError(f"rule {rule.name}, wildcards {wildcards}: {e}") from e
    if wildcards and job.targetfile is not None and not rule.is_producer(str(job.targetfile)):
        cons = ", ".join(f"{k} ~ {v}" for k, v in sorted(_constraints(workflow, rule).items()))
        raise MockError(f"rule {rule.name} makes no job for {wildcards}: the wildcards break its constraints ({cons})")
    return job


def job_object(workflow, job):
    """The ``snakemake`` object a ``script:`` job of ``job`` receives (snakemake.script.Snakemake)."""
    from snakemake.script import Snakemake

    script = script_path(job.rule)
    return Snakemake(
        job.input,
        job.output,
        job.params,
        job.wildcards,
        job.threads,
        job.resources,
        job.log,
        workflow.config,
        job.rule.name,
        0 if job.benchmark is not None else None,
        str(script.parent) if script else None,
    )


def mock_snakemake(
    rule: str,
    configfile: str | os.PathLike | None = None,
    config_overrides: Mapping | None = None,
    *,
    workdir: str | os.PathLike | None = None,
    threads: int | None = None,
    snakefile: str | os.PathLike | None = None,
    **wildcards: str,
):
    """The ``snakemake`` object of rule ``rule``'s job for ``wildcards``, as a real run would pass it.

    ``configfile``: the config (default: the workflow's ``config/config.yaml``); ``config_overrides``: a
    nested mapping merged on top (``snakemake --config``). ``workdir``: the working directory the job's
    relative paths belong to (``snakemake --directory``); when given, this process changes into it and
    stays there, so that the paths work. ``threads``: ``--set-threads rule=N`` (default: the rule's own
    threads, capped at this machine's cores, as with ``--cores all``).
    """
    if configfile is not None:
        configfile = Path(configfile).resolve()  # relative to where the user called from, as on the CLI
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)
    cores = max(int(threads), available_cores()) if threads else None
    with open_workflow(configfile, config_overrides, snakefile=snakefile, cores=cores) as wf:
        r = get_rule(wf, rule)
        job = build_job(wf, r, wildcards, threads=threads)
        try:
            return job_object(wf, job)
        except Exception as e:  # a param or resource function that fails for these wildcards
            raise MockError(f"rule {r.name}, wildcards {wildcards}: {e}") from e


def target_jobs(workflow, rule, limit: int | None = None) -> list[dict]:
    """Wildcards of the jobs of ``rule`` that the workflow's default target needs under this config
    (what ``snakemake`` with no target would build), from Snakemake's DAG; [] when it cannot be built."""
    from snakemake.dag import DAG
    from snakemake.io import IOCache

    async def grow(dag, target):  # the first half of DAG.init: the jobs, no software envs, no needrun
        await dag.update([await dag.rule2job(target)], create_inventory=True)

    try:
        if getattr(workflow, "iocache", None) is None:
            workflow.iocache = IOCache(workflow.dag_settings.max_inventory_wait_time)
        target = workflow.get_rule(workflow.default_target)
        dag = DAG(workflow, rules=list(workflow.rules), targetrules={target}, targetfiles=set(), ignore_incomplete=True)
        workflow.async_run(grow(dag, target))
    except Exception:
        return []
    found = sorted({tuple(sorted(dict(j.wildcards_dict or {}).items())) for j in dag.jobs if j.rule.name == rule.name})
    return [dict(w) for w in found[:limit]]
