"""Run every benchmark study (``make bench``); each writes to ``benchmarks/results/``.

Slow: about three hours of CPU time on 2 cores. The studies are independent processes that use
one torch thread each, so ``--jobs 2`` (what ``make bench`` uses) runs two at a time, longest
first; the timing studies that need the whole machine (``EXCLUSIVE``) run alone at the end.
Pass ``--quick`` for the smoke-test mode of the studies that have one. Each study's output is
logged to ``benchmarks/results/logs/<study>.log``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
LOGS = HERE / "results" / "logs"
# (command, has a --quick mode), longest first: with --jobs > 1 they are started in this order
STUDIES = [
    ("integration_peers.py --dataset mouse_cortex", True),
    ("query_mapping_mouse_cortex.py", True),
    ("integration_mouse_cortex.py", True),
    ("generation_mouse_cortex.py", True),
    ("differential_mouse_cortex.py", False),
    ("integration_peers.py --dataset bmmc_cite", True),
    ("integration_peers.py --dataset bmmc_multiome", True),
    ("split_embedding_mouse_cortex.py", True),
    ("simulation_astrocytes.py", True),
    ("perturbation_bone_marrow.py", True),
    ("integration_mosaic_pbmc.py", True),
    ("query_mapping_pbmc_mosaic.py", True),
    ("normalised_inputs_mouse_cortex.py", True),
    ("minnet_scaling.py", False),
    ("minnet_mouse_cortex.py", False),
    ("minnet_smoothing.py", False),
    ("pp_timing.py", False),
    ("modality_mixing_vs_ilisi.py", False),
    ("integration_ceiling_mouse_cortex.py", False),
]
# studies that time code using both cores: run one at a time after the others
EXCLUSIVE = [
    ("scaling_sccross.py", True),
    ("generation_speed.py", True),
]


def _command(script: str, has_quick: bool, quick: bool) -> list[str]:
    name, *options = script.split()
    return [sys.executable, str(HERE / name), *options] + (["--quick"] if quick and has_quick else [])


def _log_path(script: str, quick: bool) -> Path:
    stem = script.replace(".py", "").replace(" --dataset ", "_").replace(" ", "_")
    return LOGS / f"{stem}{'_quick' if quick else ''}.log"


def _start(script: str, has_quick: bool, quick: bool) -> tuple[subprocess.Popen, float]:
    command = _command(script, has_quick, quick)
    log = _log_path(script, quick)
    print(f"[bench] start {' '.join(command[1:])} (log: {log.relative_to(HERE.parent)})", flush=True)
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=HERE.parent, stdout=handle, stderr=subprocess.STDOUT)
    return process, time.perf_counter()


def run(studies: list[tuple[str, bool]], jobs: int, quick: bool) -> list[dict]:
    """Run ``studies`` with at most ``jobs`` at a time; one record (study, status, seconds) each."""
    pending, running, records = list(studies), {}, []
    while pending or running:
        while pending and len(running) < jobs:
            script, has_quick = pending.pop(0)
            running[script] = _start(script, has_quick, quick)
        time.sleep(2)
        for script, (process, started) in list(running.items()):
            if process.poll() is None:
                continue
            del running[script]
            status = "ok" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
            seconds = time.perf_counter() - started
            print(f"[bench] {status}: {script} in {seconds:.0f} s", flush=True)
            records.append({"study": script, "status": status, "wall_s": round(seconds), "jobs": jobs})
    return records


def write_summary(records: list[dict], total_s: float, jobs: int, quick: bool) -> Path:
    """``results/bench_run[_quick].md``: each study's status and wall time in this run."""
    from _common import machine_description, package_versions

    rows = "\n".join(f"| `{r['study']}` | {r['status']} | {r['wall_s']} | {r['jobs']} |" for r in records)
    path = HERE / "results" / f"bench_run{'_quick' if quick else ''}.md"
    path.write_text(
        f"# `make bench` run\n\n- Machine: {machine_description()}\n"
        f"- Versions: {', '.join(f'{k} {v}' for k, v in package_versions().items())}\n"
        f"- Command: `python benchmarks/run_all.py --jobs {jobs}{' --quick' if quick else ''}`; "
        f"total wall time {total_s:.0f} s ({total_s / 60:.1f} min)\n\n"
        "| study | status | wall s | studies at a time |\n|:--|:--|--:|--:|\n"
        f"{rows}\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test mode where a study has one")
    parser.add_argument("--jobs", type=int, default=1, help="studies run at the same time")
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = run(STUDIES, max(1, args.jobs), args.quick) + run(EXCLUSIVE, 1, args.quick)
    total_s = time.perf_counter() - start
    summary = write_summary(records, total_s, max(1, args.jobs), args.quick)
    print(f"[bench] all studies done in {total_s:.0f} s; summary: {summary}", flush=True)
    failed = [r["study"] for r in records if r["status"] != "ok"]
    if failed:
        sys.exit(f"[bench] failed: {failed}")


if __name__ == "__main__":
    main()
