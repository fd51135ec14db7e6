"""Config validation: a JSON schema (``config/schema/config.schema.yaml``) plus one
schema per analysis stage (``config/schema/stages/<stage>.schema.yaml``).

The stage schemas are merged under ``properties.stages.properties.<stage>``, so
each stage owns its own file. Validation fills defaults and fails before any
job runs, naming the offending key.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators


class ConfigError(ValueError):
    """The config breaks its schema; the message names the key."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(Draft202012Validator)


def load_schema(schema_dir: str | Path) -> dict:
    """The full schema: the core file plus every stage schema."""
    schema_dir = Path(schema_dir)
    schema = yaml.safe_load((schema_dir / "config.schema.yaml").read_text())
    stages = schema["properties"].setdefault("stages", {"type": "object", "properties": {}})
    stages.setdefault("properties", {})
    stages["default"] = {}
    stages["additionalProperties"] = False
    for f in sorted((schema_dir / "stages").glob("*.schema.yaml")):
        name = f.name[: -len(".schema.yaml")]
        sub = yaml.safe_load(f.read_text())
        sub.setdefault("default", {})
        sub.setdefault("additionalProperties", False)
        stages["properties"][name] = sub
    return schema


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


_TRUE, _FALSE, _NULL = ("true", "yes", "on"), ("false", "no", "off"), ("null", "none", "~", "")


def _coerce_scalar(value: str, types: list[str]):
    """``value`` (a string from the command line) as the first schema type it parses as, else unchanged."""
    low = value.strip().lower()
    for t in types:
        try:
            if t == "integer":
                return int(value)
            if t == "number":
                return float(value)
        except ValueError:
            continue
        if t == "boolean" and low in _TRUE + _FALSE:
            return low in _TRUE
        if t == "null" and low in _NULL:
            return None
    return value


def coerce_to_schema(instance, schema: Mapping):
    """Strings where the schema wants a number, integer, boolean or null, converted in place.

    Snakemake's ``--config key=value`` parses a top-level value as int, float or bool, but a nested
    one (``--config 'stages={alpha_sweep: {alpha_step: 0.2}}'``) arrives as the string ``'0.2'``; a
    value that is a string where the schema allows a string stays one. Returns the (possibly new) value.
    """
    if isinstance(instance, str):
        types = schema.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        if "enum" in schema and not types:
            types = [
                {bool: "boolean", int: "integer", float: "number", type(None): "null"}.get(type(v), "string")
                for v in schema["enum"]
            ]
        if types and "string" not in types:
            return _coerce_scalar(instance, types)
        return instance
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(instance):
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                instance[key] = coerce_to_schema(instance[key], sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
        instance[:] = [coerce_to_schema(v, schema["items"]) for v in instance]
    return instance


def validate_config(config: dict, schema_dir: str | Path) -> dict:
    """Validate ``config`` in place (filling defaults); raise :class:`ConfigError` naming every bad key.

    Strings from ``--config key=value`` are first typed by the schema (:func:`coerce_to_schema`).
    """
    schema = load_schema(schema_dir)
    coerce_to_schema(config, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            where = _key_path(e)
            if e.validator == "additionalProperties":
                lines.append(f"config key {where!r}: {e.message} (unknown key)")
            else:
                lines.append(f"config key {where!r}: {e.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    # validate again so that defaults filled inside defaults are checked too
    return config


def canonical(obj):
    """A copy with dict keys sorted recursively, so that Snakemake's repr-based
    params comparison does not see a change when only key order changed."""
    if isinstance(obj, Mapping):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


# Keys each dataset kind needs (the schema cannot say "required when kind is ...", readably).
KIND_REQUIRES = {
    "coco": ("captions", "images"),
    "folder": ("captions", "images"),
    "embeddings": ("path",),
    "images": ("images",),
    "captions": ("captions",),
    "demo": (),
    "world": ("world",),
}
PAIRED_KINDS = ("coco", "folder", "demo", "world", "embeddings")
#: kinds whose images and captions the workflow generates (under results/generated/{dataset}/)
GENERATED_KINDS = ("demo", "world")


def open_clip_architectures() -> set[str]:
    """Architecture names open_clip ships configs for, read from its package folder (no import)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return set()
    names = set()
    for loc in spec.submodule_search_locations:
        names |= {p.stem for p in (Path(loc) / "model_configs").glob("*.json")}
    return names


def check_config(config: dict, *, known_archs: set[str] | None = None, n_shards: int | None = None) -> None:
    """Cross-checks the schema cannot express; raise :class:`ConfigError` listing every problem.

    Dangling references (a dataset's ``models``, an external set's ``reference``), keys a
    dataset kind requires, a model without weights, reduced precision on a CPU-only model,
    an architecture open_clip does not know (when ``known_archs`` is given), reversed
    ``*_min``/``*_max`` grids of a stage, and a shard count below 1.
    """
    problems = []
    datasets, models = config["datasets"], config.get("models") or {}
    for name, d in datasets.items():
        where = f"datasets.{name}"
        kind = d["kind"]
        for key in KIND_REQUIRES[kind]:
            if not d.get(key):
                problems.append(f"{where}: kind {kind!r} needs '{key}'")
        for m in d.get("models") or []:
            if m not in models:
                problems.append(f"{where}.models: {m!r} is not a model under models: (have {sorted(models)})")
        if kind != "embeddings" and not (d.get("models") or models):
            problems.append(f"{where}: kind {kind!r} is embedded by a model, but models: is empty")
        if kind == "world" and d.get("world") and d["world"] not in (config.get("worlds") or {}):
            have = sorted(config.get("worlds") or {})
            problems.append(f"{where}.world: {d['world']!r} is not a world under worlds: (have {have})")
        ref = d.get("reference")
        if ref is not None:
            if ref not in datasets:
                problems.append(f"{where}.reference: {ref!r} is not a dataset (have {sorted(datasets)})")
            elif ref == name:
                problems.append(f"{where}.reference: a dataset cannot be scored against itself")
            elif datasets[ref]["kind"] not in PAIRED_KINDS:
                problems.append(
                    f"{where}.reference: {ref!r} is an external set (kind "
                    f"{datasets[ref]['kind']!r}); the reference must hold image-caption pairs"
                )
    for name, m in models.items():
        where = f"models.{name}"
        tr = m.get("train")
        if tr:
            if tr["world"] not in (config.get("worlds") or {}):
                problems.append(f"{where}.train.world: {tr['world']!r} is not a world under worlds:")
            if m.get("init_seed") is not None:
                problems.append(f"{where}: train and init_seed both write `pretrained`; keep one")
            if not m.get("pretrained") or Path(m["pretrained"]).suffix.lower() not in (".pt", ".pth"):
                problems.append(f"{where}.pretrained: a trained model needs the checkpoint file to write (…/name.pt)")
            ls = tr.get("logit_scale", "learned")
            if ls != "learned":
                try:
                    ok = 0 < float(ls) <= 100
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    problems.append(f"{where}.train.logit_scale: 'learned' or a number in (0, 100], got {ls!r}")
        if not m.get("pretrained") and not tr:
            problems.append(
                f"{where}.pretrained: no weights given. Name an open_clip tag (e.g. openai) or a "
                "checkpoint file; random weights only when asked for, with init_seed (and "
                "pretrained: the file to write them to)"
            )
        if m.get("precision", "fp32") != "fp32" and m.get("device") == "cpu":
            problems.append(f"{where}.precision: {m['precision']} needs a GPU, but device is cpu (use fp32)")
        mc = m.get("model_config")
        if mc and Path(mc).stem != m["arch"]:
            problems.append(
                f"{where}.model_config: open_clip registers {mc!r} as {Path(mc).stem!r}, but arch is {m['arch']!r}"
            )
        if not mc and known_archs and m["arch"] not in known_archs:
            close = difflib.get_close_matches(m["arch"], sorted(known_archs), n=5, cutoff=0.6)
            problems.append(
                f"{where}.arch: open_clip has no architecture {m['arch']!r}"
                + (f" (similar: {', '.join(close)})" if close else "")
                + "; give model_config: a JSON config for a new one"
            )
    for stage, block in (config.get("stages") or {}).items():
        for key, lo in block.items():
            if key.endswith("_min") and f"{key[:-4]}_max" in block:
                hi = block[f"{key[:-4]}_max"]
                if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
                    problems.append(f"stages.{stage}.{key}: {lo} is above {key[:-4]}_max {hi} (reversed grid)")
    if n_shards is not None and n_shards < 1:
        problems.append(f"embedding shards (--set-scatter split=N or embedding.shards): {n_shards}; need at least 1")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
