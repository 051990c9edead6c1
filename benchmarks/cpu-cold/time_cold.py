"""Cold-start timing of fresh `whisperfast` processes (benchmarks/cold-start-cpu.md's method).

Usage: python benchmarks/cpu-cold/time_cold.py RUNS VARIANT=PYTHONPATH [VARIANT=PYTHONPATH ...]
(an empty PYTHONPATH runs the working tree). Each variant and command gets one warm-up run,
then RUNS fresh processes, variants alternated run by run. Prints one JSON object: per variant
and command, the samples and their median, in seconds (transcribe: wall - timings.total).
Run it with PYTHONDONTWRITEBYTECODE unset and PYTHONPYCACHEPREFIX set, as a normal install
behaves after its first run.

The machine is shared: each sample also records `others`, the CPU cores that other processes
kept busy while it ran (/proc/stat's busy time, less the child's own), and each round first
waits up to QUIET_WAIT_S (20) seconds for a second in which others use under QUIET_CORES cores.
Medians are given over all samples and over the quiet ones (others < QUIET_CORES)."""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

EXE = ".venv/bin/whisperfast"
QUIET_CORES = 0.3
QUIET_WAIT_S = 20
COMMANDS = {"help": ["--help"], "info": ["info"],
            "transcribe": ["transcribe", "samples/jfk.wav", "--fast", "--json", "-q"]}


def busy_seconds() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet():
    """Until a second passes with others using under QUIET_CORES cores, or QUIET_WAIT_S."""
    deadline = time.time() + QUIET_WAIT_S
    while time.time() < deadline:
        b = busy_seconds()
        time.sleep(1)
        if busy_seconds() - b < QUIET_CORES:
            return


def once(args, pythonpath):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0 = busy_seconds()
    t = time.perf_counter()
    p = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = p.communicate()
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b1 = busy_seconds()
    if p.returncode:
        sys.exit(f"{args}: exit {p.returncode}: {err[-500:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    row = {"wall": wall, "cpu": cpu, "others": max(b1 - b0 - cpu, 0.0) / wall}
    if args[0] == "transcribe":
        timings = json.loads(out)["timings"]
        row.update(overhead=wall - timings["total"], load=timings["load"], total=timings["total"])
    return row


def main():
    runs = int(sys.argv[1])
    variants = dict(v.split("=", 1) for v in sys.argv[2:])
    samples = {v: {c: [] for c in COMMANDS} for v in variants}
    for c, args in COMMANDS.items():
        for v, pp in variants.items():
            once(args, pp)  # warm-up: .pyc, model cache, page cache
    for _ in range(runs):
        wait_quiet()
        for c, args in COMMANDS.items():
            for v, pp in variants.items():
                samples[v][c].append(once(args, pp))
    loads = os.getloadavg()
    report = {"load_average_end": loads, "runs": runs}
    for v in variants:
        report[v] = {}
        for c in COMMANDS:
            rows = samples[v][c]
            key = "overhead" if c == "transcribe" else "wall"
            med = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
            quiet = [r[key] for r in rows if r["others"] < QUIET_CORES]
            report[v][c] = {"median": med, key: [round(r[key], 3) for r in rows],
                            "others": [round(r["others"], 2) for r in rows],
                            "quiet_median": round(statistics.median(quiet), 3) if quiet else None, "quiet_n": len(quiet)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
