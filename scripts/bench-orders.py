#!/usr/bin/env python3
"""Pay and cancel latency against a running seckilld.

Creates a sale (require_token must be off, as in the benchmark daemons),
wins N orders (one per user), then pays half of them and cancels the other
half one call at a time on one keep-alive connection, and prints the
latency of each kind (p50, p90, p99, max, in ms). Every call is one Lua
script on the item's keys in Redis; what differs between builds is how the
daemon reaches Redis.

Usage: bench-orders.py BASE_URL ADMIN_TOKEN [N]
"""

import http.client
import json
import sys
import time
import urllib.parse


def call(conn, method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    started = time.perf_counter()
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    took = time.perf_counter() - started
    return resp.status, json.loads(payload or b"{}"), took


def quantiles(samples):
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000
    return f"p50 {pick(0.50):.3f}  p90 {pick(0.90):.3f}  p99 {pick(0.99):.3f}  max {s[-1] * 1000:.3f} ms"


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = urllib.parse.urlparse(argv[0])
    token, n = argv[1], int(argv[2]) if len(argv) > 2 else 2000
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    sale = f"orders-bench-{int(time.time())}"
    now = int(time.time() * 1000)
    item = {"item_id": "i", "title": "bench", "price_cents": 100, "stock": n, "per_user_limit": 1}
    st, body, _ = call(conn, "PUT", f"/admin/v1/sales/{sale}",
                       {"start_ms": now + 500, "end_ms": now + 3_600_000, "items": [item]}, token)
    if st != 200:
        print(f"cannot create the sale: {st} {body}", file=sys.stderr)
        return 1
    time.sleep(1.0)
    orders = []
    for u in range(n):
        st, body, _ = call(conn, "POST", f"/api/v1/sales/{sale}/items/i/purchase",
                           {"user_id": f"u{u}", "request_id": f"{sale}-{u}"})
        if st == 200 and body.get("status") == "success":
            orders.append((f"u{u}", body["order_id"]))
    if len(orders) < n:
        print(f"only {len(orders)} of {n} purchases won", file=sys.stderr)
        return 1
    pay, cancel = [], []
    for k, (user, oid) in enumerate(orders):
        action = "pay" if k % 2 == 0 else "cancel"
        st, body, took = call(conn, "POST", f"/api/v1/orders/{oid}/{action}", {"user_id": user})
        if st != 200:
            print(f"{action} {oid}: {st} {body}", file=sys.stderr)
            return 1
        (pay if action == "pay" else cancel).append(took)
    print(f"pay    ({len(pay)} calls): {quantiles(pay)}")
    print(f"cancel ({len(cancel)} calls): {quantiles(cancel)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
