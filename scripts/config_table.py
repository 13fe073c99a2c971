"""Print the README's configuration table from config/defaults.toml (keys, defaults, comments).

Why generated: defaults.toml is the one place for settings; the README table is copied from
this script's output (tests/packaging/test_readme.py fails when a key is missing there).

    python scripts/config_table.py
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

DEFAULTS = Path(__file__).resolve().parents[1] / "config" / "defaults.toml"
# meanings for keys that defaults.toml leaves uncommented
_NOTES = {
    "torch_threads": "CPU threads per process for torch / ONNX Runtime",
    "host": "interface `clicksmith serve` listens on (0.0.0.0 in Docker)",
    "port": "port `clicksmith serve` listens on",
    "basic_auth_user": "HTTP Basic user Label Studio must send to /setup and /predict",
    "basic_auth_pass": "its password",
    "queue_name": "RQ queue shared by the backend, the CLI and the workers",
    "prelabel_batch_size": "tasks per pre-label job",
    "job_timeout_seconds": "RQ timeout of a pre-label / corrections job",
    "job_retries": "RQ retries of a failed job",
    "corrections_root": "where webhook corrections are stored (images, masks, manifest)",
}
_LINE = re.compile(r"^(?P<key>[a-z_][a-z0-9_]*)\s*=\s*(?P<value>.*?)\s*(?:#\s*(?P<note>.*))?$")


def rows(path: Path = DEFAULTS) -> list[tuple[str, object, str]]:
    """(key, default, comment) for every top-level key, in file order."""
    text = path.read_text()
    values = tomllib.loads(text)
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m["key"] in values:
            note = (m["note"] or "").strip() or _NOTES.get(m["key"], "")
            out.append((m["key"], values[m["key"]], note))
    missing = set(values) - {k for k, _, _ in out}
    if missing:
        raise ValueError(f"keys not on a line of their own in {path}: {sorted(missing)}")
    return out


def table(path: Path = DEFAULTS) -> str:
    lines = ["| setting (env var) | default | meaning |", "|---|---|---|"]
    for key, value, note in rows(path):
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        shown = f"`{shown}`" if shown else "(empty)"
        note = note.replace("|", "\\|")
        lines.append(f"| `{key.upper()}` | {shown} | {note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
