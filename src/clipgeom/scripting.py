"""Glue for the thin scripts in ``workflow/scripts``.

A script ends in ``main(get_job(__file__))`` (or ``job = get_job(__file__)``) and gets an object with
``input``, ``output``, ``params``, ``wildcards``, ``log``, ``threads`` and ``resources``: the real
``snakemake`` object when Snakemake runs it; run by hand, the same job built from the workflow itself
(:func:`clipgeom.mock.mock_snakemake`: Snakefile, config, schema defaults, param functions), for the
rule whose ``script:`` is this file and the wildcards given on the command line::

    python workflow/scripts/thin_shell.py --help      # the rule, its input/output/params, the jobs of the config
    python workflow/scripts/thin_shell.py --configfile config/demo.yaml dataset=demo model=tiny-a
    python workflow/scripts/thin_shell.py --configfile config/demo.yaml dataset=demo model=tiny-a -n  # print it

Without the workflow, every path and param can be given explicitly instead (``p`` gets the stage's
schema defaults; ``--help`` lists the names a rule takes)::

    python workflow/scripts/thin_shell.py \\
        --input embeddings=results/demo/tiny-a/embeddings.h5 \\
        --output metrics=/tmp/ts/metrics.json values=/tmp/ts/values.csv \\
            features_png=/tmp/ts/f.png features_pdf=/tmp/ts/f.pdf norms_png=/tmp/ts/n.png norms_pdf=/tmp/ts/n.pdf \\
        --params '{"p": {"hist_bins": 30}, "demo": true}'

Logging goes to the rule's log file (under Snakemake there only; run by hand, to stderr too:
:func:`setup_logging`). An exception that ends the script is written to the log too — its
message first, then the traceback — so that the log Snakemake points at after a failure (the
only output left on a cluster) holds the error.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

from clipgeom.threads import confine


class _Named(SimpleNamespace):
    """Attribute and item access, like Snakemake's Namedlist."""

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else list(vars(self).values())[key]

    def get(self, key, default=None):
        return getattr(self, key, default)

    def keys(self):
        return vars(self).keys()


def _pairs(items, what="KEY=VALUE"):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected {what}, got {item!r}")
        out[key] = value
    return out


def get_job(script: str | os.PathLike | None = None, namespace: dict | None = None, argv: list[str] | None = None):
    """The running ``snakemake`` object; outside Snakemake, the job built from the command line.

    ``script``: the calling script's path (``__file__``; default: the ``__main__`` module's), which names
    the rule; ``argv``: the arguments (default ``sys.argv[1:]``).
    """
    ns = namespace if namespace is not None else sys.modules["__main__"].__dict__
    if "snakemake" in ns:
        confine(getattr(ns["snakemake"], "threads", None))  # already done at import; cheap to repeat
        return ns["snakemake"]
    script = script if script is not None else ns.get("__file__")
    if script is None:
        raise SystemExit("get_job: no snakemake object and no script path to find the rule from")
    return job_from_command_line(script, sys.argv[1:] if argv is None else argv, doc=ns.get("__doc__"))


# ----------------------------------------------------------------------------- by hand
EXPLICIT = ("input", "output", "params", "log", "resources")
WORKFLOW = ("configfile", "config", "directory", "rule", "dry_run")


def _parser(prog: str, description: str = "", epilog: str = "", add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        add_help=add_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "wildcards_pos", nargs="*", default=[], metavar="WILDCARD=VALUE", help="the job's wildcards, e.g. dataset=demo"
    )
    p.add_argument("--wildcards", nargs="*", default=[], metavar="WILDCARD=VALUE", help="the same, as an option")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="the job's threads (snakemake --set-threads RULE=N); "
        "default: the rule's threads, capped at this machine's cores",
    )
    w = p.add_argument_group("the job from the workflow (default)")
    w.add_argument("--configfile", default=None, metavar="FILE", help="the config (default: config/config.yaml)")
    w.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one config override, as snakemake --config (repeat the option for more)",
    )
    w.add_argument(
        "--directory",
        "-d",
        default=None,
        metavar="DIR",
        help="the working directory the job's paths are relative to (snakemake --directory; default: here)",
    )
    w.add_argument("--rule", default=None, help="the rule, where several rules run this script")
    w.add_argument("--dry-run", "-n", action="store_true", help="print the job and exit, running nothing")
    e = p.add_argument_group("explicit paths instead of the workflow (no config, only p's schema defaults)")
    e.add_argument("--input", nargs="*", default=None, metavar="KEY=PATH")
    e.add_argument("--output", nargs="*", default=None, metavar="KEY=PATH")
    e.add_argument("--params", default=None, help="JSON object of params (every param the rule names)")
    e.add_argument("--log", default=None)
    e.add_argument("--resources", default=None, help="JSON object of resources")
    return p


def job_from_command_line(script: str | os.PathLike, argv: list[str], doc: str | None = None):
    """The job a script run by hand works on: from the workflow (the default), or explicit paths."""
    script = Path(script).resolve()
    prog = _shown_path(script)
    if "-h" in argv or "--help" in argv:
        known, _ = _parser(prog, add_help=False).parse_known_args([a for a in argv if a not in ("-h", "--help")])
        description, epilog = _help_text(script, prog, known, doc)
        _parser(prog, description, epilog).parse_args(["--help"])  # prints and exits
    a = _parser(prog).parse_args(argv)
    explicit = [k for k in EXPLICIT if getattr(a, k) is not None]
    if explicit:
        mixed = [k for k in WORKFLOW if getattr(a, k)]
        if mixed:
            raise SystemExit(
                f"{prog}: --{explicit[0]} (explicit paths) cannot be combined with --{mixed[0].replace('_', '-')} "
                "(the job from the workflow)"
            )
        return _explicit_job(script, a)
    return _workflow_job(script, prog, a)


def _explicit_job(script: Path, a):
    confine(a.threads or 1)
    params = json.loads(a.params or "{}")
    if isinstance(params.get("p"), dict):
        params["p"] = stage_defaults(script, params["p"])
    return SimpleNamespace(
        input=_Named(**_pairs(a.input)),
        output=_Named(**_pairs(a.output)),
        params=_Named(**params),
        wildcards=_Named(**_pairs(a.wildcards_pos + a.wildcards)),
        log=[a.log] if a.log else [],
        threads=a.threads or 1,
        resources=_Named(**json.loads(a.resources or "{}")),
    )


def stage_defaults(script: str | os.PathLike, p: dict) -> dict:
    """``p`` with the defaults of the stage schema ``config/schema/stages/<script name>.schema.yaml`` filled
    in (unchanged when the script is no stage's), checked against it."""
    import yaml
    from jsonschema import Draft202012Validator

    from clipgeom.mock import repository_root

    stage = Path(script).stem
    path = repository_root(script) / "config" / "schema" / "stages" / f"{stage}.schema.yaml"
    if not path.is_file():
        return p
    schema = yaml.safe_load(path.read_text())
    schema.setdefault("additionalProperties", False)
    out = dict(p)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
    errors = [
        f"p{''.join(f'.{k}' for k in e.absolute_path)}: {e.message}"
        for e in Draft202012Validator(schema).iter_errors(out)
    ]
    if errors:
        raise SystemExit(f"--params: p breaks the {stage} schema ({path}):\n  " + "\n  ".join(errors))
    return out


def _overrides(items) -> dict:
    from snakemake.cli import parse_config

    try:
        return parse_config(items)
    except Exception as e:
        raise SystemExit(f"--config: {e}") from None


def _script_rule(workflow, script: Path, name: str | None):
    """The rule whose ``script:`` is ``script`` (``name`` picks one where several are)."""
    from clipgeom.mock import MockError, get_rule, rules_running

    rules = rules_running(workflow, script)
    names = [r.name for r in rules]
    if name is not None:
        rule = get_rule(workflow, name)
        if rule.name not in names:
            raise MockError(
                f"rule {name} does not run {script.name} (rules that do here: {', '.join(names) or 'none'})"
            )
        return rule
    if not rules:
        raise MockError(
            f"no rule of the workflow runs {script.name} under this config (a rule defined per dataset or "
            "model exists only for the entries that need it; try --configfile)"
        )
    if len(rules) > 1:
        raise MockError(f"several rules run {script.name} under this config; pick one with --rule: {', '.join(names)}")
    return rules[0]


def _workflow_job(script: Path, prog: str, a):
    from clipgeom.mock import MockError, available_cores, build_job, job_object, open_workflow, target_jobs

    wildcards = _pairs(a.wildcards_pos + a.wildcards, "WILDCARD=VALUE")
    configfile = Path(a.configfile).resolve() if a.configfile else None
    overrides = _overrides(a.config)
    if a.directory:
        Path(a.directory).mkdir(parents=True, exist_ok=True)
        os.chdir(a.directory)
    cores = max(a.threads, available_cores()) if a.threads else None
    try:
        with open_workflow(configfile, overrides, snakefile=_snakefile(script), cores=cores) as wf:
            rule = _script_rule(wf, script, a.rule)
            try:
                job = build_job(wf, rule, wildcards, threads=a.threads)
                sm = job_object(wf, job)
            except Exception as e:
                msg = str(e) if isinstance(e, MockError) else f"rule {rule.name}, wildcards {wildcards}: {e}"
                if rule.wildcard_names:
                    names = _wildcard_names(rule)
                    jobs = "; ".join(" ".join(f"{k}={j[k]}" for k in names) for j in target_jobs(wf, rule, limit=6))
                    msg += f"\n(jobs of this config's default target: {jobs or 'none'})"
                raise MockError(msg) from e
    except MockError as e:
        raise SystemExit(f"{prog}: {e}") from None
    if a.dry_run:
        print(_describe_job(sm))
        raise SystemExit(0)
    missing = [str(f) for f in sm.input if not os.path.exists(f)]
    if missing:
        cmd = ["snakemake", "-s", str(_snakefile(script)), "--directory", os.getcwd()]
        cmd += ["--configfile", str(configfile)] if configfile else []
        cmd += [f"--config={c}" for c in a.config] + ["--cores", "1", *missing]
        raise SystemExit(
            f"{prog}: the job's input is missing: {', '.join(missing)}. Make it with the workflow first:\n"
            f"  {shlex.join(cmd)}"
        )
    for f in [*sm.output, *sm.log]:
        Path(f).parent.mkdir(parents=True, exist_ok=True)
    confine(sm.threads)
    wc = " ".join(f"{k}={v}" for k, v in sm.wildcards.items())
    print(f"{prog}: rule {sm.rule} {wc} outside Snakemake, in {os.getcwd()}", file=sys.stderr)
    return sm


def _snakefile(script: Path) -> Path:
    from clipgeom.mock import repository_root

    return repository_root(script) / "Snakefile"


def _shown_path(path: Path) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


def _short(value, width: int = 110) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _entries(namedlist) -> list[tuple[str, str]]:
    """(name, value) of a rule's or a job's Namedlist; a function shows as ``<name()>``, a pattern without
    its wildcard constraints."""
    from snakemake.io import strip_wildcard_constraints

    out = []
    for i, (name, item) in enumerate(namedlist._allitems()):
        if callable(item):
            item = f"<{getattr(item, '__name__', 'function')}()>"
        elif isinstance(item, list | tuple):
            item = " ".join(map(str, item))
        else:
            item = strip_wildcard_constraints(str(item))
        out.append((name if name is not None else f"[{i}]", item))
    return out


def _wildcard_names(rule) -> list[str]:
    """The rule's wildcards in the order its first output names them."""
    import re

    first = str(rule.output[0]) if len(rule.output) else ""
    seen = [m for m in re.findall(r"\{\s*(\w+)", first) if m in rule.wildcard_names]
    order = list(dict.fromkeys(seen))
    return order + sorted(set(rule.wildcard_names) - set(order))


def _block(title: str, rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return [f"  {title}: none"]
    if len(rows) == 1 and rows[0][0].startswith("["):
        return [f"  {title}: {rows[0][1]}"]
    width = max(len(k) for k, _ in rows)
    return [f"  {title}:"] + [f"    {k:<{width}}  {v}" for k, v in rows]


def _describe_job(sm, width: int | None = None) -> str:
    """The resolved job: what the script will read, write and get (param values cut at ``width``)."""
    lines = [f"rule {sm.rule}, wildcards: " + (" ".join(f"{k}={v}" for k, v in sm.wildcards.items()) or "none")]
    lines += _block("input", _entries(sm.input))
    lines += _block("output", _entries(sm.output))
    lines += _block("params", [(k, _short(v, width) if width else repr(v)) for k, v in sm.params.items()])
    lines += _block("log", _entries(sm.log))
    lines.append(f"  threads: {sm.threads}")
    lines += _block("resources", [(k, str(v)) for k, v in sm.resources.items() if not k.startswith("_")])
    return "\n".join(lines)


def _describe_rule(rule) -> str:
    """The rule with its wildcards left open: input/output patterns, param names."""
    lines = [f"rule {rule.name}, wildcards: " + (", ".join(_wildcard_names(rule)) or "none")]
    lines += _block("input", _entries(rule.input))
    lines += _block("output", _entries(rule.output))
    lines.append("  params: " + (", ".join(rule.params.keys()) or "none"))
    lines += _block("log", _entries(rule.log))
    return "\n".join(lines)


def _help_text(script: Path, prog: str, a, doc: str | None) -> tuple[str, str]:
    """--help's description (the rule, its docstring) and epilog (its job under this config, an example)."""
    from clipgeom.mock import MockError, build_job, job_object, open_workflow, rules_running, target_jobs

    first = " ".join((doc or "").strip().split("\n\n")[0].split())
    description = [first] if first else []
    description.append(
        "Run by hand, this script builds its rule's job from the workflow itself (Snakefile, config, schema defaults, "
        "param functions), as `snakemake` would run it for the given wildcards, and runs it here; nothing else "
        "runs, so the job's input must exist. Paths are relative to the working directory (--directory)."
    )
    config = a.configfile or "config/config.yaml (the default)"
    epilog = []
    try:
        wildcards = _pairs(a.wildcards_pos + a.wildcards, "WILDCARD=VALUE")
        configfile = Path(a.configfile).resolve() if a.configfile else None
        if a.directory:
            os.chdir(a.directory)
        with open_workflow(configfile, _overrides(a.config), snakefile=_snakefile(script)) as wf:
            several = [r.name for r in rules_running(wf, script)] if a.rule is None else []
            if len(several) > 1:  # one rule per dataset or model: show the first, name them all
                rule = wf.get_rule(several[0])
                epilog.append(
                    f"rules that run this script under this config (--rule picks one): {', '.join(several)}\n"
                )
            else:
                rule = _script_rule(wf, script, a.rule)
            about = first.removeprefix(f"Rule {rule.name}:").strip()
            if rule.docstring and rule.docstring.strip() not in about:
                about = f"{rule.docstring.strip()} {about}".strip()
            where = os.path.relpath(rule.snakefile, _snakefile(script).parent)
            description[:1] = [f"Rule {rule.name} ({where}): {about}"]
            jobs = target_jobs(wf, rule, limit=6)
            resolved = None
            if set(wildcards) == set(rule.wildcard_names):
                try:
                    resolved = _describe_job(job_object(wf, build_job(wf, rule, wildcards)), width=110)
                except Exception as e:
                    epilog.append(f"these wildcards make no job: {e}\n")
            epilog.append(f"under config {config}:")
            epilog.append(resolved or _describe_rule(rule))
            if rule.wildcard_names:
                listed = "; ".join(" ".join(f"{k}={j[k]}" for k in _wildcard_names(rule)) for j in jobs)
                epilog.append(f"  jobs of this config's default target: {listed or 'none (or the DAG did not build)'}")
            example = jobs[0] if jobs else {w: f"<{w}>" for w in rule.wildcard_names}
            if set(wildcards) == set(rule.wildcard_names):
                example = wildcards
            example = {w: example[w] for w in _wildcard_names(rule)}
    except (MockError, SystemExit) as e:
        epilog.append(f"the rule's job cannot be shown under config {config}: {e}")
        return "\n\n".join(description), "\n".join(epilog)
    cmd = ["python", prog]
    if a.configfile:
        cmd += ["--configfile", a.configfile]
    cmd += [f"--config={c}" for c in a.config]
    if a.directory:
        cmd += ["--directory", a.directory]
    if len(several) > 1 or a.rule:
        cmd += ["--rule", rule.name]
    cmd += [f"{k}={v}" for k, v in example.items()]
    epilog += [
        "",
        "example (add -n to print the job without running it):",
        "  " + " ".join(shlex.quote(c) if not c.startswith("<") else c for c in cmd),
    ]
    return "\n\n".join(description), "\n".join(epilog)


def setup_logging(job, name: str = "clipgeom") -> logging.Logger:
    """Log to the job's log file (its first log entry); to stderr only where nobody reads that file live.

    - Under Snakemake with a log file: the file only. The terminal shows Snakemake's own job lines, not
      every job's messages interleaved; a failed job's log holds the error and its traceback
      (:func:`_log_uncaught`), and Snakemake names that file (``--show-failed-logs`` prints it).
    - Run by hand (``python workflow/scripts/<rule>.py ...``, or with ``mock_snakemake``): the log file, if
      the job has one, and stderr.
    - Without a log file: stderr.

    Python warnings go the same way (``logging.captureWarnings``).
    """
    logs = list(job.log) if job.log else []
    handlers: list[logging.Handler] = []
    if logs:
        handlers.append(logging.FileHandler(str(logs[0]), mode="w"))
    if not logs or not _under_snakemake():
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    return logging.getLogger(name)


def _under_snakemake() -> bool:
    """Whether this process is a Snakemake ``script:`` job: Snakemake's preamble defines ``__real_file__``
    in the script's namespace (a script run by hand, or through ``runpy`` with ``mock_snakemake``, has none)."""
    main = sys.modules.get("__main__")
    return main is not None and "__real_file__" in vars(main)


def _log_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook: the error's message and traceback into the job's log (and stderr, run by hand)."""
    log = logging.getLogger("clipgeom")
    if issubclass(exc_type, KeyboardInterrupt):
        log.error("interrupted")
        return
    log.error("%s: %s", exc_type.__name__, exc)
    log.error("traceback (most recent call last):\n%s", "".join(traceback.format_exception(exc_type, exc, tb)).rstrip())
    removed = remove_corrupt_output(exc)
    if removed:
        log.error("removed the unreadable file %s, so that the next run rebuilds it", removed)
    for h in logging.getLogger().handlers:
        h.flush()


def remove_corrupt_output(exc: BaseException) -> str | None:
    """Delete the file an exception marks as corrupt (``exc.path``, ``exc.corrupt``) when it is
    a workflow output under ``results/`` of the working directory; never a user's own file."""
    path = getattr(exc, "path", None)
    if not path or not getattr(exc, "corrupt", False):
        return None
    p = Path(path).resolve()
    results = (Path.cwd() / "results").resolve()
    if results not in p.parents or not p.is_file():
        return None
    os.unlink(p)
    return str(path)


def log_stream(job=None):
    """The open stream of the job's log file (for progress bars), or stderr."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            return h.stream
    return sys.stderr
