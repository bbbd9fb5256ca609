"""Write the command launchers named by setup.cfg's console_scripts (one source of truth).

Usage: python3 launchers.py SETUP_CFG TEMPLATE OUTDIR PYTHON
"""

import configparser
import os
import sys
from typing import List, Tuple


def console_scripts(setup_cfg: str) -> List[Tuple[str, str, str]]:
    """(name, module, function) of each ``name = module:function`` line."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    scripts = []
    for line in cfg.get("options.entry_points", "console_scripts").splitlines():
        if not line.strip():
            continue
        name, target = (part.strip() for part in line.split("=", 1))
        module, func = (part.strip() for part in target.split(":", 1))
        scripts.append((name, module, func))
    return scripts


def main(argv: List[str]) -> int:
    setup_cfg, template, outdir, python = argv
    with open(template) as f:
        text = f.read()
    for name, module, func in console_scripts(setup_cfg):
        path = os.path.join(outdir, name)
        with open(path, "w") as f:
            f.write(text.replace("@PYTHON@", python).replace("@NAME@", name)
                    .replace("@MODULE@", module).replace("@FUNC@", func))
        os.chmod(path, 0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
