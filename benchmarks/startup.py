"""CLI start-up: the light commands against ``import torch, torchvision``, side by side.

Each command runs as a fresh process ``--repeats`` times (after one unmeasured warm-up that fills
the file cache), the commands interleaved so that load on a shared machine hits them alike; the
script prints each median and its ratio to the median of ``python -c "import torch,
torchvision"``, and whether the command imported torch or timm at all. Goal (issue 12):
``--help``, ``list`` and ``info NAME`` each at most 0.3x the torch import, importing no torch;
issue 20: the timm registration ``import mdan_zoo`` sets up imports no timm (timm installed).

    PYTHONPATH=$PWD python benchmarks/startup.py [--repeats 7] [--quick]

The CLI runs as ``python -m mdan_zoo``, which imports the same ``mdan_zoo.cli`` as the
``mdan-zoo`` console script; PYTHONPATH=$PWD makes the checkout the one measured. This script
imports neither torch nor mdan_zoo itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BASELINE = ("python -c 'import torch, torchvision'", ["-c", "import torch, torchvision"])
COMMANDS = [
    ("mdan-zoo --help", ["--help"]),
    ("mdan-zoo list", ["list"]),
    ("mdan-zoo info mdan_fi", ["info", "mdan_fi"]),
]
GOAL = 0.3

# Runs the CLI in-process, then reports on stderr whether torch got imported.
PROBE = """
import sys
from mdan_zoo.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
sys.stdout.flush()
print("TORCH-IMPORTED" if "torch" in sys.modules else "TORCH-NOT-IMPORTED", file=sys.stderr)
print("TIMM-IMPORTED" if "timm" in sys.modules else "TIMM-NOT-IMPORTED", file=sys.stderr)
sys.exit(code or 0)
"""


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured runs per command (7)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 runs of --help against a bare `python -c pass` (no torch import to wait for)",
    )
    parser.add_argument("--threads", type=int, default=0, help="unused: fresh processes")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats: at least 5")
    global BASELINE, COMMANDS
    if args.quick:
        args.repeats = 5
        BASELINE = ("python -c pass", ["-c", "pass"])
        COMMANDS = COMMANDS[:1]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    )
    runs = [(BASELINE[0], BASELINE[1])] + [(n, ["-m", "mdan_zoo", *a]) for n, a in COMMANDS]
    for _, argv in runs:  # warm-up: file cache, .pyc files
        _run(argv, env)
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.repeats):
        for name, argv in runs:
            times[name].append(_run(argv, env)[0])
    probes = {name: _run(["-c", PROBE, *a], env)[1] for name, a in COMMANDS}
    imports = {name: "TORCH-IMPORTED" in err for name, err in probes.items()}
    timm = {name: "TIMM-IMPORTED" in err for name, err in probes.items()}
    base = statistics.median(times[BASELINE[0]])
    print(
        f"# {args.repeats} runs each, interleaved, median; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "\n| fresh process | seconds (median) | vs import torch, torchvision | imports torch "
        "| imports timm |"
    )
    print("|---|---|---|---|---|")
    torch_in_base = "yes" if "torch" in BASELINE[0] else "no"
    print(f"| `{BASELINE[0]}` | {base:.2f} | 1.00x | {torch_in_base} | no |")
    for name, _ in COMMANDS:
        med = statistics.median(times[name])
        yes = {True: "yes", False: "no"}
        print(
            f"| `{name}` | {med:.2f} | {med / base:.2f}x | {yes[imports[name]]} | {yes[timm[name]]} |"
        )
    worst = max(statistics.median(times[n]) for n, _ in COMMANDS) / base
    print(f"\ngoal: each <= {GOAL:.2f}x and no torch import; worst now {worst:.2f}x")


if __name__ == "__main__":
    main()
