#!/usr/bin/env python3
"""check-layers.py: the include graph must follow the layers, one direction only.

    base <- protocols <- core <- sandbox <- actors/<name> <- gateway <- cli

A file may include headers of its own layer and of the layers to its left, never of a layer to
its right, and an actor never includes another actor (the gateway counts as an actor here: it
may not include actors/*).  cli/ may include anything.  Tests and load drivers are not
checked.  Quoted includes are resolved the way the compiler does (the including file's
folder first, then the project root); system includes (<...>) are ignored.

Exit status 0 when the graph is clean, 1 with one line per offending include otherwise.
Usage: scripts/check-layers.py [ROOT]
"""
import os
import re
import sys

ORDER = ["base", "protocols", "core", "sandbox", "actors", "gateway", "cli"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SOURCES = (".c", ".h", ".def", ".inc")


def unit_of(path):
    """(layer index, unit name) of a project path, or None if it is in no layer."""
    parts = path.split("/")
    if parts[0] not in ORDER:
        return None
    if parts[0] == "actors" and len(parts) > 2:
        return ORDER.index("actors"), "actors/" + parts[1]
    return ORDER.index(parts[0]), parts[0]


def allowed(src, dst):
    (sl, su), (dl, du) = src, dst
    if su == du:
        return True
    if su == "cli":
        return True
    if dl > sl:
        return False
    # Actors (and the gateway, an actor too) never include one another.
    actorish = lambda u: u.startswith("actors/") or u == "gateway"
    if actorish(su) and actorish(du):
        return False
    return True


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    bad = []
    for layer in ORDER:
        for d, _, files in os.walk(os.path.join(root, layer)):
            for name in sorted(files):
                if not name.endswith(SOURCES):
                    continue
                path = os.path.relpath(os.path.join(d, name), root)
                src = unit_of(path)
                with open(os.path.join(root, path), errors="replace") as f:
                    text = f.read()
                for m in INCLUDE.finditer(text):
                    inc = m.group(1)
                    local = os.path.normpath(os.path.join(os.path.dirname(path), inc))
                    target = local if os.path.exists(os.path.join(root, local)) else inc
                    if not os.path.exists(os.path.join(root, target)):
                        continue  # generated at build time (seccomp_bpf.inc) or a system header
                    dst = unit_of(os.path.normpath(target))
                    if dst is None or allowed(src, dst):
                        continue
                    line = text.count("\n", 0, m.start()) + 1
                    bad.append(f"{path}:{line}: includes {target} ({dst[1]} is not below {src[1]})")
    for b in bad:
        print(b)
    if bad:
        print(f"check-layers: {len(bad)} include(s) break the layering", file=sys.stderr)
        return 1
    print("check-layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
