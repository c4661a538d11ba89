"""Run every benchmark study in turn (``make bench``); each writes to ``benchmarks/results/``.

Slow: hours on 2 CPU cores. Pass ``--quick`` to run the smoke-test mode of the studies that
have one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
STUDIES = [
    ("pp_timing.py", False),
    ("integration_mouse_cortex.py", True),
    ("minnet_mouse_cortex.py", False),
    ("split_embedding_mouse_cortex.py", True),
    ("integration_peers.py --dataset mouse_cortex", True),
    ("integration_peers.py --dataset bmmc_multiome", True),
    ("integration_peers.py --dataset bmmc_cite", True),
    ("scaling_sccross.py", True),
    ("minnet_smoothing.py", False),
    ("minnet_scaling.py", False),
    ("generation_mouse_cortex.py", True),
    ("simulation_astrocytes.py", True),
    ("perturbation_bone_marrow.py", True),
    ("generation_speed.py", True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-test mode where a study has one")
    args = parser.parse_args()
    failed = []
    for script, has_quick in STUDIES:
        name, *options = script.split()
        command = [sys.executable, str(HERE / name), *options] + (
            ["--quick"] if args.quick and has_quick else []
        )
        print(f"[bench] {' '.join(command)}", flush=True)
        if subprocess.run(command, cwd=HERE.parent, check=False).returncode != 0:
            failed.append(script)
    if failed:
        sys.exit(f"[bench] failed: {failed}")


if __name__ == "__main__":
    main()
