#!/usr/bin/env python3
"""Rewrites the quoted includes of tapegrad's headers relative to the including file.

Installed, a header H of the tree is <prefix>/include/tapegrad/H, and the
public headers include/tapegrad/X are <prefix>/include/tapegrad/X, with only
<prefix>/include on a consumer's include path. An include written relative to
the including file, in that installed layout, resolves there and in the tree
alike ("../core/tensor.hpp" from ops/conv.hpp; "engine/core/tensor.hpp" from
include/tapegrad/tapegrad.hpp, which the tree finds through its include path).
The .cpp files are not installed and keep the repo-root form.

Usage: scripts/relative_includes.py [FILE...]   default: every header of the library
"""
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ["engine", "ops", "nn", "optim", "data", "include"]
HEADER_SUFFIXES = {".hpp", ".inl", ".ipp"}
INCLUDE = re.compile(r'^(\s*#\s*include\s*")([^"]+)(".*)$')


def resolve(header: Path, inc: str):
    """Where the compiler finds inc in the tree: the file's folder, then the root, then include/."""
    for base in (header.parent, REPO, REPO / "include"):
        candidate = (base / inc).resolve()
        if candidate.is_file() and REPO in candidate.parents:
            return candidate
    return None


def installed(path: Path) -> str:
    rel = path.relative_to(REPO).as_posix()
    return rel[len("include/"):] if rel.startswith("include/") else "tapegrad/" + rel


def rewrite(header: Path) -> bool:
    lines = header.read_text().splitlines(keepends=True)
    changed = False
    for i, line in enumerate(lines):
        m = INCLUDE.match(line)
        if not m:
            continue
        target = resolve(header, m.group(2))
        if target is None:
            sys.exit(f"{header.relative_to(REPO)}: \"{m.group(2)}\" is not in the tree")
        rel = os.path.relpath(installed(target), os.path.dirname(installed(header)))
        if rel != m.group(2):
            lines[i] = m.group(1) + rel + m.group(3) + ("\n" if line.endswith("\n") else "")
            changed = True
    if changed:
        header.write_text("".join(lines))
    return changed


def main():
    if len(sys.argv) > 1:
        headers = [Path(f).resolve() for f in sys.argv[1:]]
    else:
        headers = sorted(p for part in PARTS for p in (REPO / part).rglob("*") if p.suffix in HEADER_SUFFIXES)
    for h in headers:
        if rewrite(h):
            print(f"rewrote {h.relative_to(REPO)}")


if __name__ == "__main__":
    main()
