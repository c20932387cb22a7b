"""`config`: the packaged configs, listed with what each is for, or one printed verbatim to copy and edit."""

from __future__ import annotations

import sys
from pathlib import Path

from lstm_forecast.config import packaged_config, packaged_configs
from lstm_forecast.console import note, print_json, stdout


def show(*, name: str, json_output: bool) -> None:
    """Print the packaged config `name` exactly as shipped (`default` lists every key with its default)."""
    path = packaged_config(name)
    text = path.read_text(encoding="utf-8")
    if json_output:
        print_json({"name": path.stem, "path": str(path), "text": text})
    else:
        sys.stdout.write(text)


def list_configs(*, json_output: bool) -> None:
    """One line per packaged config: its name and the first line of its leading comment."""
    rows = [{"name": name, "description": description(path), "path": str(path)}
            for name, path in packaged_configs().items()]
    if json_output:
        print_json({"configs": rows})
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        stdout.print(f"{row['name']:<{width}}  {row['description']}", markup=False)
    folder = next(iter(packaged_configs().values())).parent
    note(f"In {folder}. `lstm-forecast config show NAME > my.yaml` copies one to edit; `--config my.yaml` uses "
         "it (`--config NAME` a packaged one as it is).")


def description(path: Path) -> str:
    """The first comment line of a config file, without its `#`."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""
