"""Fake `dpkg-query -W [-f=FORMAT] pkg...` / `dpkg-query -s pkg` for the node's simulated packages."""

from __future__ import annotations

import re
import sys

from ._cli import Context, Fail, run

DEFAULT_FORMAT = "${binary:Package}\t${Version}\n"


def _expand(fmt: str, name: str, version: str) -> str:
    fields = {"Package": name, "binary:Package": name, "Version": version, "Status": "install ok installed",
              "db:Status-Abbrev": "ii ", "db:Status-Status": "installed", "Architecture": "all"}  # fmt: skip
    text = re.sub(r"\$\{([^}:;]+(?::[^};]+)?)(;-?\d+)?\}", lambda m: fields.get(m.group(1), ""), fmt)
    return text.replace("\\n", "\n").replace("\\t", "\t")


def main(ctx: Context, argv: list[str]) -> int:
    packages = ctx.state.read("packages.json", {}).get(ctx.node, {})
    fmt = DEFAULT_FORMAT
    mode = None
    names: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg in ("-W", "--show"):
            mode = "show"
        elif arg in ("-s", "--status"):
            mode = "status"
        elif arg.startswith(("-f", "--showformat")):
            if "=" in arg:
                fmt = arg.split("=", 1)[1]
            elif arg.startswith("-f") and len(arg) > 2:
                fmt = arg[2:]
            else:
                fmt = argv[index]
                index += 1
        else:
            names.append(arg)
    if mode is None:
        raise Fail("dpkg-query: need an action option\n\nType dpkg-query --help for help about querying packages.", 2)
    missing = False
    for name in names:
        version = packages.get(name)
        if version is None:
            missing = True
            if mode == "status":
                print(f"dpkg-query: package '{name}' is not installed and no information is available",
                      file=sys.stderr)  # fmt: skip
            else:
                print(f"dpkg-query: no packages found matching {name}", file=sys.stderr)
            continue
        if mode == "status":
            print(f"Package: {name}\nStatus: install ok installed\nVersion: {version}\n")
        else:
            sys.stdout.write(_expand(fmt, name, version))
    sys.stdout.flush()
    return 1 if missing else 0


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
