"""The layering check: clean on this tree, and it catches each kind of violation.

Each bad case is a tiny tree made in a temporary folder: a lower layer including a higher one,
an actor including a sibling actor, the gateway including an actor.  A good case (a higher
layer including a lower one, cli including anything) must pass.
"""
import os
import subprocess
import sys
import tempfile

root, script = sys.argv[1], os.path.join(sys.argv[1], "scripts", "check-layers.py")


def run(tree):
    d = tempfile.mkdtemp(prefix="sblayers-")
    for path, text in tree.items():
        os.makedirs(os.path.join(d, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(d, path), "w") as f:
            f.write(text)
    return subprocess.run([sys.executable, script, d], capture_output=True, text=True)


r = subprocess.run([sys.executable, script, root], capture_output=True, text=True)
assert r.returncode == 0, "this tree breaks its layers:\n" + r.stdout
print("ok tree is clean")

bad = {
    "core includes the gateway": {"core/a.c": '#include "gateway/g.h"\n', "gateway/g.h": ""},
    "base includes protocols": {"base/a.c": '#include "protocols/p.h"\n', "protocols/p.h": ""},
    "sandbox includes an actor": {"sandbox/s.c": '#include "actors/pool/pool.h"\n',
                                  "actors/pool/pool.h": ""},
    "an actor includes a sibling": {"actors/pool/p.c": '#include "actors/storage/s.h"\n',
                                    "actors/storage/s.h": ""},
    "the gateway includes an actor": {"gateway/g.c": '#include "actors/storage/s.h"\n',
                                      "actors/storage/s.h": ""},
    "a relative include climbs up": {"protocols/p.c": '#include "../core/c.h"\n', "core/c.h": ""},
}
for name, tree in bad.items():
    r = run(tree)
    assert r.returncode == 1 and "includes" in r.stdout, name + ": not caught\n" + r.stdout
    print("ok caught:", name)

good = {"gateway/g.c": '#include "core/c.h"\n#include "base/b.h"\n', "core/c.h": "",
        "base/b.h": "", "cli/m.c": '#include "gateway/g.h"\n#include "actors/pool/p.h"\n',
        "gateway/g.h": "", "actors/pool/p.h": '#include "sandbox/s.h"\n', "sandbox/s.h": ""}
r = run(good)
assert r.returncode == 0, "a good tree was refused:\n" + r.stdout
print("ok good tree passes")
