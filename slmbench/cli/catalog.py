"""``slmbench list`` and ``slmbench show``: what the registry holds (strategies, tasks, plugins, trackers)
and the embedded models."""

from __future__ import annotations

import argparse
import sys

from slmbench.cli.console import printable


def _origin(item) -> str:
    """Where a registered strategy or task came from: its distribution, else its plugin's name."""
    return item.distribution or f"plugin {item.plugin}"


def _strategy_info(name: str, item) -> dict:
    """A registered strategy as plain data: its metadata, origin, options and the ranges the search tries."""
    from slmbench.common.options import describe_options
    from slmbench.strategy.search_space import search_space

    cls = item.value
    return {
        **cls.metadata.model_dump(mode="json"),
        "from": _origin(item),
        "reusable": cls.reusable(),
        "options": [option.to_dict() for option in describe_options(cls.Options)],
        "searched": {option: search.describe() for option, search in search_space(cls).items()},
    }


def _model_rows() -> tuple[list[str], list[list[str]]]:
    """``slmbench list models``: every embedded model, whether it is installed, its size and where it comes from.
    Parameters are counted from the weights once the model is cached (its nominal size before)."""
    from slmbench.common.files import folder_bytes
    from slmbench.lm.embedded import EMBEDDED
    from slmbench.lm.models import stored_param_count
    from slmbench.report.markdown import size

    rows = []
    for name, model in EMBEDDED.items():
        folder = model.cached()
        counted = stored_param_count(folder) if folder is not None else None
        on_disk = model.package_bytes() + (folder_bytes(folder) if folder is not None and model.folder_name else 0)  # else in the package
        rows.append(
            [
                name,
                model.kind,
                ("yes, cached" if folder is not None else "yes") if model.installed() else "no",
                f"{counted / 1e6:.1f}M" if counted else f"{model.parameters} (nominal)",
                size(on_disk) if on_disk else "-",
                model.license,
                model.precision,
                model.install,
            ]
        )
    return ["model", "kind", "installed", "parameters", "disk", "licence", "source weights", "install"], rows


def _rows(what: str, registry) -> tuple[list[str], list[list[str]]]:
    """The headers and rows that ``slmbench list WHAT`` prints."""
    if what == "models":
        return _model_rows()
    if what == "strategies":
        return ["strategy", "family", "from", "description"], [
            [name, item.value.family.value, _origin(item), item.value.description] for name, item in sorted(registry.strategies.items())
        ]
    if what == "tasks":
        return ["task", "from", "file"], [[name, _origin(item), str(item.value)] for name, item in sorted(registry.tasks.items())]
    if what == "trackers":
        return ["tracker", "from", "description"], [
            [name, _origin(item), item.value.description] for name, item in sorted(registry.trackers.items())
        ]
    rows = [[name, distribution, "loaded"] for name, distribution in sorted(registry.plugins.items())]
    rows += [[failure.plugin, "", f"failed: {failure.error}"] for failure in registry.failures]
    return ["plugin", "distribution", "status"], rows


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    """``rows`` as a rich table on stdout, every cell literal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers)
    for row in rows:
        table.add_row(*(Text(printable(cell)) for cell in row))
    Console(highlight=False).print(table)


def list_command(args: argparse.Namespace, registry) -> None:
    """``slmbench list``: a table, plain text or JSON of the registered strategies, tasks, plugins or trackers,
    or of the embedded models."""
    import json

    if args.what == "strategies" and args.format == "json":
        print(json.dumps([_strategy_info(name, item) for name, item in sorted(registry.strategies.items())], indent=1))
        return
    headers, rows = _rows(args.what, registry)
    if args.format == "json":
        print(json.dumps([dict(zip(headers, row)) for row in rows], indent=1))
        return
    form = args.format or ("table" if sys.stdout.isatty() else "text")
    if form == "text":
        for row in rows:
            print("\t".join(" ".join(str(cell).split()) for cell in row))
    else:
        _print_table(headers, rows)
    if args.options and args.what == "strategies":
        for name, item in sorted(registry.strategies.items()):
            print()
            _print_options(name, item, indent="  ")


def _print_options(name: str, item, indent: str = "") -> None:
    """Every option of a strategy, one line each, with its default, allowed and searched values."""
    info = _strategy_info(name, item)
    print(f"{name} options:" if info["options"] else f"{name}: no options")
    for option in info["options"]:
        allowed = f"; allowed: {option['allowed']}" if option["allowed"] else ""
        search = info["searched"].get(option["name"])
        searched = f"; searched on validation: {search}" if search else ""
        print(f"{indent}{option['name']} ({option['type']}, default {option['default']!r}{allowed}{searched}): {option['description']}")


def show_command(args: argparse.Namespace, registry) -> None:
    """``slmbench show``: one strategy, its shared models and every option it accepts."""
    import json

    item = registry.strategies.get(args.strategy)
    if item is None:
        registry.strategy(args.strategy)  # UnknownName with a "did you mean"
    if args.format == "json":
        print(json.dumps(_strategy_info(args.strategy, item), indent=1))
        return
    info = _strategy_info(args.strategy, item)
    print(f"{info['name']} ({info['family']}, from {info['from']}): {info['description']}")
    print(f"calls shared models: {', '.join(info['calls']) or 'none'}; depends on: {', '.join(info['depends_on']) or 'none'}")
    if not info["reads_labels"]:
        print("reads no train label (learning curves run it once)")
    print(
        "saves and loads what it learns: slmbench predict applies its trials"
        if info["reusable"]
        else "saves nothing: its trials cannot be reused"
    )
    _print_options(args.strategy, item, indent="  ")
