"""Migrations of records written by older slmbench versions, on the plain dicts read from their JSON.

``slmbench.records.schema`` applies them before validating a record, so every older schema version loads
(see ``records.SCHEMA_VERSION``). Version 1 (slmbench 0.1) kept typed fields inside ``details``,
named the options ``params`` and a run's one command ``command``; version 2 is today's.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any


def _is_current(data: dict[str, Any]) -> bool:
    """Whether a record needs no migration; a version that is no integer is left to validation to report."""
    version = data.get("schema_version", data.get("schema", 1))
    return not isinstance(version, int) or isinstance(version, bool) or version >= 2


def migrate_trial(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 trial (untyped, typed fields inside ``details``) in today's shape."""
    if _is_current(data):
        return data
    details = dict(data.get("details") or {})
    config = dict(data.get("config") or {})
    if config:
        models = config.get("models") or {}
        config["models"] = {
            "causal_lm": models.get("causal_lm_name", models.get("causal_lm", "")),
            "embedding_model": models.get("embedding_model_name", models.get("embedding_model", "")),
            **{key: models[key] for key in ("device", "dtype", "trust_remote_code") if key in models},
        }
        config["options"] = config.pop("params", None) or {}
        config.setdefault("task", data.get("task") or "")
    migrated = {
        **data,
        "schema_version": 2,
        "config": config or None,
        "options": details.pop("params", None) or {},
        "labelled_examples": details.pop("labelled_examples", data.get("labelled_examples")),
        "prompt_tokens_per_example": details.pop("prompt_tokens_per_example", None),
        "details": details,
        "cost": data.get("cost") or {},
        "metrics": data.get("metrics") or None,
        "environment": data.get("environment") or {},
    }
    if "learns_from_train" not in data:
        migrated["learns_from_train"] = migrated["labelled_examples"] != 0
    return migrated


def migrate_run(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``run.json`` (one seed, ``command`` before ``commands``) in today's shape."""
    if _is_current(data):
        return data
    commands = data.get("commands") or ([data["command"]] if data.get("command") else [])
    provenance = dict(data.get("data") or {})
    if isinstance(provenance.get("file"), str):  # version 1 kept the machine's absolute path; today: the name
        provenance["file"] = PurePath(provenance["file"]).name
    return {**data, "schema_version": 2, "commands": commands, "seeds": [data.get("seed", 0)], "data": provenance}
