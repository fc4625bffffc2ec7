"""`python3 -m ashpkg OUTDIR`: write OUTDIR/man/{ashctl.8,ash.toml.5,ashlayers.7} and
OUTDIR/completions/{ashctl.bash,_ashctl} (what the native packages install)."""

from __future__ import annotations

import sys
from pathlib import Path

from ashpkg.completion import COMPLETIONS
from ashpkg.manual import PAGES


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m ashpkg OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for folder, made in (("man", PAGES), ("completions", COMPLETIONS)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name, make in made.items():
            (out / folder / name).write_text(make(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
