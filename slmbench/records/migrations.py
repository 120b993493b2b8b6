"""Migrations of records written by older slmbench versions, on the plain dicts read from their JSON.

``slmbench.records.store`` applies them before validating a record, so every older schema version loads
(see ``records.SCHEMA_VERSION``), one version at a time. Version 1 (slmbench 0.1) kept typed fields
inside ``details``, named the options ``params`` and a run's one command ``command``; version 2 kept a
prompting strategy's calibration inside ``details``, wrote ``{}`` for a run's options, profile or data
it did not record, and (rewritten from version 1) may hold run options in 0.1's shape; version 3 is today's.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any


def _version(data: dict[str, Any]) -> int | None:
    """The record's schema version; None for one that is no integer (left to validation to report)."""
    version = data.get("schema_version", data.get("schema", 1))
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def migrate_trial(data: dict[str, Any]) -> dict[str, Any]:
    """A trial record of any older version in today's shape."""
    version = _version(data)
    if version is not None and version < 2:
        data = _trial_from_1(data)
    return _trial_from_2(data) if version is not None and version < 3 else data


def migrate_run(data: dict[str, Any]) -> dict[str, Any]:
    """A ``run.json`` of any older version in today's shape."""
    version = _version(data)
    if version is not None and version < 2:
        data = _run_from_1(data)
    return _run_from_2(data) if version is not None and version < 3 else data


def _trial_from_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 trial (untyped, typed fields inside ``details``) in the shape of version 2."""
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


def _trial_from_2(data: dict[str, Any]) -> dict[str, Any]:
    """A version-2 trial in today's shape: the calibration ``details`` held becomes the typed field."""
    details = data.get("details")
    if not (isinstance(details, dict) and isinstance(details.get("calibration"), dict)):
        return {**data, "schema_version": 3}
    return {
        **data,
        "schema_version": 3,
        "details": {k: v for k, v in details.items() if k != "calibration"},
        "calibration": details["calibration"],
    }


def _run_from_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``run.json`` (one seed, ``command`` before ``commands``) in the shape of version 2."""
    commands = data.get("commands") or ([data["command"]] if data.get("command") else [])
    provenance = dict(data.get("data") or {})
    if isinstance(provenance.get("file"), str):  # version 1 kept the machine's absolute path; today: the name
        provenance["file"] = PurePath(provenance["file"]).name
    return {**data, "schema_version": 2, "commands": commands, "seeds": [data.get("seed", 0)], "data": provenance}


def _run_from_2(data: dict[str, Any]) -> dict[str, Any]:
    """A version-2 ``run.json`` in today's shape: ``{}`` where nothing was recorded becomes null, a model
    named alone a list of one, and run options still in 0.1's shape (kept by records rewritten from
    version 1) today's."""
    migrated = {**data, "schema_version": 3, **{key: None for key in ("options", "profile", "data") if data.get(key) == {}}}
    if isinstance(models := data.get("models"), dict):
        named_alone = {key: [models[key]] for key in ("causal_lm", "embedding_model") if isinstance(models.get(key), str)}
        migrated["models"] = {**models, **named_alone}
    if isinstance(options := migrated.get("options"), dict):
        migrated["options"] = _options_of_0_1(options)
    return migrated


def _options_of_0_1(options: dict[str, Any]) -> dict[str, Any]:
    """Run options with 0.1's one ``seed``, ``model`` and ``embedding_model`` as lists, and its ``train_sizes``
    (text such as ``16,64,all``, or null) as a list of sizes; today's options come back unchanged."""
    plural = {"seed": "seeds", "model": "models", "embedding_model": "embedding_models"}
    converted = {plural.get(key, key): [value] if key in plural else value for key, value in options.items()}
    sizes = options.get("train_sizes")
    if isinstance(sizes, str):
        converted["train_sizes"] = [int(size) for size in sizes.split(",") if size.strip().isdigit()]
    elif "train_sizes" in options and sizes is None:
        converted["train_sizes"] = []
    return converted
