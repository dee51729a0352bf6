"""The benchmark harness: one entry, one suite per question, shared timing (``sbs/timing.py``).

  diffusers  ldmlab vs diffusers side by side (stage-2 / UNet / DiT / DDIM / DDIM loop / stage-1),
             ratios + ``benchmarks/results/<case>.json``              (make bench)
  levers     speed levers on ldmlab's own UNet vs its float32 eager baseline   (make bench-levers)
  ae         stage-1 step: our LPIPS vs the official package, float32 vs bf16  (make bench-ae)
  sweep      where a guidance sweep's time goes: sampling vs metrics           (make bench-sweep)
  guidance   sampling cost of each guidance type vs unguided                   (make bench-guidance)

  .venv/bin/python benchmarks/bench.py diffusers --quick --cases unet,ddim     (smoke run, tiny sizes)
  .venv/bin/python benchmarks/bench.py <suite> --help
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

SUITES = ("diffusers", "levers", "ae", "sweep", "guidance")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="suite", required=True)
    modules = {}
    for name in SUITES:
        module = importlib.import_module(f"sbs.suite_{name}")
        sub = commands.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        modules[name] = (module, sub)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    module, sub = modules[args.suite]
    return module.run(args, sub) or 0


if __name__ == "__main__":
    sys.exit(main())
