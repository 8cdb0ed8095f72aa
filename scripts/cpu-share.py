#!/usr/bin/env python3
"""Where a box's CPU went over a window: each named program's share of all
the CPU time the box had (user + system of every process whose command name
starts with the name, threads included), and the box's idle share.

    scripts/cpu-share.py SECONDS NAME [NAME ...]
    scripts/cpu-share.py --while PID NAME [NAME ...]   (until PID exits)

Prints one line, `name share% …`, shares of the box's total (all cores
together): on two cores, one busy core is 50 %. Used by the benchmark
scripts beside a load, so that a server's throughput is read against what
the other programs on the same cores took.
"""
import os
import sys
import time


def box():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)


def per_name(names):
    out = dict.fromkeys(names, 0)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        for n in names:
            if comm.startswith(n[:15]):
                out[n] += ticks
                break
    return out


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "--while":
        pid, names = sys.argv[2], sys.argv[3:]
        wait = lambda: os.path.exists(f"/proc/{pid}")  # noqa: E731
    else:
        until = time.monotonic() + float(sys.argv[1])
        names = sys.argv[2:]
        wait = lambda: time.monotonic() < until  # noqa: E731
    i0, t0 = box()
    p0 = per_name(names)
    while wait():
        time.sleep(0.1)
    i1, t1 = box()
    p1 = per_name(names)
    total = max(t1 - t0, 1)
    parts = [f"{n} {100 * (p1[n] - p0[n]) / total:.0f}%" for n in names]
    parts.append(f"idle {100 * (i1 - i0) / total:.0f}%")
    print("  ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
