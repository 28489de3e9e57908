"""Render the config reference (a Markdown table) from configs/base.yaml's comments.

``python -m tal_core.config_doc`` prints it; ``--write README.md`` replaces the block between the
``<!-- config-reference -->`` markers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parents[1] / "configs" / "base.yaml"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
LINE = re.compile(r"^  (\w+):\s*(.*?)\s+#\s*(.*)$")


def reference(base: Path = BASE) -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    section = ""
    for line in base.read_text().splitlines():
        if re.match(r"^\w+:\s*$", line):
            section = line.rstrip(":").strip()
            continue
        match = LINE.match(line)
        if match:
            key, default, meaning = match.groups()
            rows.append(f"| `{section}.{key}` | `{default}` | {meaning.replace('|', '/')} |")
    return "\n".join(rows)


def replace_block(text: str, block: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + block + "\n" + text[end:]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        target = Path(sys.argv[2])
        target.write_text(replace_block(target.read_text(), reference()))
    else:
        print(reference())
