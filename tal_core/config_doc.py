"""The config's documentation, generated from its one source: the pydantic fields of ``tal_core.config``
(each key's default and ``description``).

``python -m tal_core.config_doc`` prints the Markdown reference; ``--write docs/configuration.md`` replaces the
block between the ``<!-- config-reference -->`` markers; ``--write-base configs/base.yaml`` rewrites the documented defaults
file. ``tests/test_config_doc.py`` keeps both equal to what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tal_core.config import Config

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
HEADER = """\
# tal-search defaults: every key of a run config, with what it means.
# Generated from the fields of tal_core/config.py (python -m tal_core.config_doc --write-base configs/base.yaml).
# Any key can be overridden with `--set section.key=value` or searched in a sweep file."""
COMMENT_COLUMN = 29


def yaml_value(value) -> str:
    """A default as it reads in YAML (flow style: lists on one line)."""
    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n").removesuffix("\n...")


def entries() -> list[tuple[str, str, str, str]]:
    """(section, key, default as YAML, description) of every config key, in declaration order."""
    rows = []
    for section, section_field in Config.model_fields.items():
        for key, field in section_field.annotation.model_fields.items():
            rows.append((section, key, yaml_value(field.default), field.description or ""))
    return rows


def base_yaml() -> str:
    lines, section = [HEADER], None
    for name, key, default, meaning in entries():
        if name != section:
            lines.append(f"{name}:")
            section = name
        setting = f"  {key}: {default}"
        lines.append(f"{setting.ljust(COMMENT_COLUMN - 2)}  # {meaning}")
    return "\n".join(lines) + "\n"


def reference() -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{s}.{k}` | `{d}` | {m.replace('|', '/')} |" for s, k, d, m in entries()]
    return "\n".join(rows)


def replace_block(text: str, block: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + block + "\n" + text[end:]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        target = Path(sys.argv[2])
        target.write_text(replace_block(target.read_text(), reference()))
    elif len(sys.argv) == 3 and sys.argv[1] == "--write-base":
        Path(sys.argv[2]).write_text(base_yaml())
    else:
        print(reference())
