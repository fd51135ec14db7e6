"""Config validation: a JSON schema (``config/schema/config.schema.yaml``) plus one
schema per analysis stage (``config/schema/stages/<stage>.schema.yaml``).

The stage schemas are merged under ``properties.stages.properties.<stage>``, so
each stage owns its own file. Validation fills defaults and fails before any
job runs, naming the offending key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

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


def validate_config(config: dict, schema_dir: str | Path) -> dict:
    """Validate ``config`` in place (filling defaults); raise :class:`ConfigError` naming every bad key."""
    schema = load_schema(schema_dir)
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
