#!/usr/bin/env python3
"""Where a request's time went inside seckilld, from its /metrics.

    scripts/stage-means.py http://127.0.0.1:18090 [ADMIN_TOKEN]

Prints one line: the purchase latency as the daemon timed it (from the
route to the answer: the client's own time is not in it) -- its mean, its
p99 interpolated in the histogram's buckets, and the share answered within
5 ms -- the mean time from entering the
ring to leaving each stage (seckill_stage_latency_seconds, in the order a
batch passes them), the mean requests per ring batch and per Redis call, and
the mean Redis round trip and WAL commit. Means over the daemon's whole life,
so read it from a daemon that served only the run in question.
"""

import re
import sys
import urllib.request

ORDER = ["dedupe", "deduct", "journal", "reply", "publish"]


def scrape(base, token):
    req = urllib.request.Request(base.rstrip("/") + "/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    try:
        text = scrape(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
    except OSError as e:
        sys.exit(f"stage-means: {e}")
    v = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)$", line)
        if m:
            v[m.group(1) + (m.group(2) or "")] = float(m.group(3))

    def mean(name, labels=""):
        n = v.get(f"{name}_count{labels}", 0.0)
        return v.get(f"{name}_sum{labels}", 0.0) / n if n else float("nan")

    def ratio(a, b):
        return v.get(a, 0.0) / v[b] if v.get(b) else float("nan")

    def quantile(name, q, label=""):
        # Linear within the bucket holding the rank (Prometheus's
        # histogram_quantile): as fine as the buckets are.
        pat = re.compile(re.escape(name) + r'_bucket\{' + label + r'le="([0-9.eE+-]+)"\}$')
        buckets = sorted((float(m.group(1)), n) for k, n in v.items() if (m := pat.match(k)))
        total = v.get(f"{name}_count" + ("{%s}" % label.rstrip(",") if label else ""), 0.0)
        if not total:
            return float("nan")
        rank, lo, below = q * total, 0.0, 0.0
        for le, n in buckets:
            if n >= rank:
                return lo + (le - lo) * (rank - below) / max(n - below, 1.0)
            lo, below = le, n
        return float("inf")

    def within(name, le):
        n = v.get(f"{name}_count", 0.0)
        return 100.0 * v.get(f'{name}_bucket{{le="{le}"}}', 0.0) / n if n else float("nan")

    p = "seckill_purchase_latency_seconds"
    parts = [
        f"purchase mean {mean(p) * 1e3:.2f} ms, p99 ~{quantile(p, 0.99) * 1e3:.1f} ms,"
        f" {within(p, '0.005'):.2f} % within 5 ms"
    ]
    st = "seckill_stage_latency_seconds"
    stages = ", ".join(
        "%s %.2f (p99 ~%.1f)"
        % (s, mean(st, '{stage="%s"}' % s) * 1e3, quantile(st, 0.99, 'stage="%s",' % s) * 1e3)
        for s in ORDER
    )
    parts.append(f"mean (p99) time in the ring until after {stages} ms")
    parts.append(f"batch {mean('seckill_ring_batch_events'):.1f} requests")
    parts.append(f"{mean('seckill_redis_batch_requests'):.1f} per Redis call")
    rtt = ratio("seckill_redis_call_seconds_total", "seckill_redis_calls_total")
    commit = ratio("seckill_wal_commit_seconds_total", "seckill_wal_commits_total")
    parts.append(f"Redis call {rtt * 1e3:.2f} ms, WAL commit {commit * 1e3:.2f} ms")
    print("; ".join(parts))


if __name__ == "__main__":
    main()
