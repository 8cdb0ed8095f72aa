#!/usr/bin/env python3
"""Black-box HTTP fuzzing of a running seckilld over raw TCP sockets.

One file on purpose, longer than most: a standalone script (standard
library only) that a test runs against a live daemon; its case generators,
the socket driver and the verdict share one table of expected answers.

Usage:
    fuzz-http.py BASE_URL ADMIN_TOKEN [--seconds N] [--seed S]
                 [--max-cases N] [--workers N] [--header-timeout-ms MS]

Sends malformed, oversized, slow, smuggled and out-of-bounds requests to
the purchase, token, request-status, order, admin and operations
endpoints, and checks what the daemon must never do:

* crash or stop answering (a refused connection, /healthz not answering);
  the run stops at the first refused connection and lists the cases
  started just before it as suspects;
* answer 5xx, except a 503 whose error code is a documented load limit
  (``too_many_connections``, ``ring_full``);
* answer 2xx or 3xx to a request that is garbage: every case is built so
  that the only correct answers are 4xx or closing the connection (a
  valid request pipelined *before* garbage may be 2xx);
* hang: neither answer nor close within the header timeout plus a margin,
  or connections still open once that time has passed after the run;
* change state: the stock hash of the sale the run creates is the same
  before and after, and no request reached the ring (the number of
  requests on the status board, ``seckill_requests``, did not grow);
* let a wrong or missing admin token through: those cases must be
  answered 401 ``bad_token`` (or refused by the HTTP parser).

Other 4xx answers with an unexpected error code, and error answers larger
than 8 KiB, are listed as "surprises" (they do not fail the run).

Every case is built from a ``random.Random(seed)``: the list of cases and
their bytes are the same for the same seed; the only run-dependent bytes
are the id of the sale the run creates (a started sale cannot be
replaced, so each run makes its own). The slow cases run on their own
threads, the others on ``--workers`` connections at once; the run stops
submitting cases when ``--seconds`` are used up or ``--max-cases`` were
submitted, and waits for those in flight (each bounded by the header
timeout plus a margin). ``--dump FILE`` writes the full bytes of the
failing (and suspect) cases.

Exit 0 when nothing failed, 1 on any failure, 2 when the daemon could not
be set up for the run (not reachable, admin token refused, ...).

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# Documented limits (docs/api.md, io/src/http/codec.rs, admin.rs).
ID_LEN_MAX = 64  # sale and item ids
CLIENT_ID_LEN_MAX = 128  # user and request ids
QUANTITY_MAX = 1000
STOCK_MAX = 1_000_000_000
PER_USER_LIMIT_MAX = 1000
TITLE_BYTES_MAX = 512
ITEMS_PER_SALE_MAX = 10_000
SALE_END_MS_MAX = 253_402_300_799_999  # the last ms of the year 9999
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

# 503 codes that a documented load limit answers; any other 5xx fails.
ALLOWED_503_CODES = {"too_many_connections", "ring_full"}
# Answers a limit may give instead of the expected code.
LIMIT_CODES = {"rate_limited_global", "rate_limited_ip", "rate_limited_user"} | ALLOWED_503_CODES

# The run's item, and one that exists nowhere. No few random byte edits
# turn the second into the first, so a mutated request cannot buy.
FUZZ_ITEM = "fz-item"
NO_ITEM = "zz-unknown-thing"
MARGIN_S = 3.0  # grace past the header timeout before a silent connection is a hang
ERROR_BODY_BIG = 8192  # an error answer larger than this is listed as a surprise
MUTATION_WAIT_S = 1.5  # how long a random mutation waits for an answer
SUSPECT_WINDOW_S = 2.0  # cases started this long before a crash are listed as suspects


# --------------------------------------------------------------------------
# Raw HTTP over a socket


@dataclass
class Answer:
    """One HTTP response read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The ``error`` field of a JSON error body, if any."""
        try:
            v = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return v.get("error") if isinstance(v, dict) else None


@dataclass
class Outcome:
    """What happened on one connection."""

    answers: list[Answer] = field(default_factory=list)
    refused: bool = False
    closed: bool = False  # the daemon closed (FIN or RST)
    hung: bool = False  # neither all answers nor a close before the deadline
    elapsed: float = 0.0
    unparsable: bytes = b""


def parse_answers(buf: bytes, eof: bool) -> tuple[list[Answer], bytes]:
    """Splits complete responses off the front of ``buf``.

    1xx interim answers are dropped. A response without Content-Length
    (other than 204/304) runs to the end of the connection, so it is only
    complete at ``eof``.
    """
    answers = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return answers, buf
        head = buf[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/\d\.\d (\d{3})", head[0])
        if not m:
            return answers, buf
        status = int(m.group(1))
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        rest = buf[end + 4 :]
        if 100 <= status < 200:
            buf = rest
            continue
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(rest) < n:
                return answers, buf
            body, buf = rest[:n], rest[n:]
        elif status in (204, 304):
            body, buf = b"", rest
        elif eof:
            body, buf = rest, b""
        else:
            return answers, buf
        answers.append(Answer(status, headers, body))


def exchange(addr, chunks, answers_wanted: int, deadline_s: float) -> Outcome:
    """Sends ``chunks`` — a list of ``(delay_s, bytes)`` — on a new
    connection, reading while it waits, then reads until ``answers_wanted``
    answers came, the daemon closed, or ``deadline_s`` (from the connect)
    passed. Stops sending once the daemon closed."""
    out = Outcome()
    start = time.monotonic()
    try:
        sock = socket.create_connection(addr, timeout=5)
    except ConnectionRefusedError:
        out.refused = True
        return out
    except OSError:
        out.refused = True
        return out
    buf = b""
    try:
        sock.setblocking(False)

        def pump(until: float) -> bool:
            """Reads what arrives until ``until`` (at least what is already
            there); False once closed."""
            nonlocal buf
            while True:
                left = max(0.0, until - time.monotonic())
                r, _, _ = select.select([sock], [], [], left)
                if not r:
                    return True
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except (ConnectionResetError, ConnectionAbortedError):
                    out.closed = True
                    return False
                if not data:
                    out.closed = True
                    return False
                buf += data
                got, _ = parse_answers(buf, False)
                if len(got) >= answers_wanted or time.monotonic() >= until:
                    return True

        def send_all(data: bytes) -> bool:
            """Sends while reading; False once the daemon closed."""
            view = memoryview(data)
            while view:
                if time.monotonic() - start > deadline_s:
                    return False
                r, w, _ = select.select([sock], [sock], [], 0.5)
                if r and not pump(time.monotonic()):
                    return False
                if w:
                    try:
                        n = sock.send(view[:65536])
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                        out.closed = True
                        return False
                    view = view[n:]
            return True

        for delay, data in chunks:
            if delay and not pump(time.monotonic() + delay):
                break
            if len(parse_answers(buf, False)[0]) >= answers_wanted:
                break
            if not send_all(data):
                break
        while not out.closed:
            if len(parse_answers(buf, False)[0]) >= answers_wanted:
                break
            if time.monotonic() - start > deadline_s:
                out.hung = True
                break
            pump(min(start + deadline_s, time.monotonic() + 0.5))
        # A close may still be on its way right after the last answer.
        if not out.closed:
            pump(time.monotonic() + 0.02)
    finally:
        sock.close()
    out.answers, out.unparsable = parse_answers(buf, out.closed)
    out.elapsed = time.monotonic() - start
    return out


def request(
    method: str,
    target: str,
    headers: list[tuple[str, str | bytes]] | None = None,
    body: bytes | str | None = None,
    version: str = "HTTP/1.1",
    content_length: bool = True,
    host: str = "127.0.0.1",
) -> bytes:
    """Builds request bytes by hand (nothing is escaped or checked)."""
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {target} {version}".encode("latin-1", "surrogateescape")]
    hdrs = [("Host", host)] + list(headers or [])
    if body is not None and content_length and not any(k.lower() == "content-length" for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        vb = v if isinstance(v, bytes) else v.encode("latin-1")
        lines.append(k.encode("latin-1") + b": " + vb)
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


# --------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    """One fuzz case: the bytes to send and what is acceptable back.

    ``expect``: error codes (or ``"closed"``) one of which is the right
    answer; a different 4xx is a surprise, or a failure when ``strict``.
    ``ok_2xx``: how many leading answers may be 2xx (a valid request
    pipelined before garbage).
    """

    kind: str
    name: str
    chunks: list[tuple[float, bytes]]
    answers_wanted: int = 1
    ok_2xx: int = 0
    deadline_s: float = 0.0  # 0: the run's default
    expect: frozenset[str] = frozenset()
    strict: bool = False
    slow: bool = False
    # Give up quietly at the deadline (random mutations, often incomplete
    # requests the daemon rightly waits on; hangs are the slow cases' job).
    may_abandon: bool = False


@dataclass
class Target:
    """What the cases aim at: the run's sale and the daemon's settings."""

    sale: str
    item: str
    token: str
    host: str
    header_timeout_s: float
    tokens_required: bool
    body_bytes_max: int = 4096

    def purchase(self, sale=None, item=None) -> str:
        return f"/api/v1/sales/{sale or self.sale}/items/{item or self.item}/purchase"

    def token_path(self, sale=None, item=None) -> str:
        return f"/api/v1/sales/{sale or self.sale}/items/{item or self.item}/token"

    def admin_sale(self, sale=None) -> str:
        return f"/admin/v1/sales/{sale or self.sale}"

    def bearer(self, token=None) -> tuple[str, str]:
        return ("Authorization", f"Bearer {self.token if token is None else token}")


class CaseBuilder:
    """Builds every case of a run from one seeded generator."""

    def __init__(self, t: Target, rng: random.Random):
        self.t = t
        self.rng = rng
        self.cases: list[Case] = []
        self.n = 0

    # -- helpers ----------------------------------------------------------

    def add(self, kind, name, data, **kw) -> None:
        chunks = data if isinstance(data, list) else [(0.0, data)]
        self.cases.append(Case(kind, name, chunks, **kw))

    def uid(self, prefix="fz") -> str:
        """A fresh valid id (never used for a real purchase)."""
        self.n += 1
        return f"{prefix}-{self.rng.randrange(16**8):08x}-{self.n}"

    def order_id(self) -> str:
        return f"{self.rng.randrange(16**16):016x}"

    def ident(self, n: int) -> str:
        """A valid id of exactly ``n`` characters."""
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:@"
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def req(self, method, target, headers=None, body=None, **kw) -> bytes:
        return request(method, target, headers, body, host=self.t.host, **kw)

    def sale_body(self, **over) -> dict:
        """A valid sale body for the run's (started) sale."""
        item = {"item_id": self.t.item, "title": "fuzz", "price_cents": 100, "stock": 5, "per_user_limit": 1}
        item.update(over.pop("item", {}))
        # A fixed, valid window (2023 to 2096): the bytes depend on the seed
        # only; on the started sale a valid body is answered sale_started.
        body = {"start_ms": 1_700_000_000_000, "end_ms": 4_000_000_000_000, "items": [item]}
        body.update(over)
        return body

    def bad_purchase_body(self) -> str:
        """A purchase body that is refused whatever the daemon's settings."""
        return json.dumps({"user_id": "bad user!", "request_id": self.uid("r")})

    # -- kinds ------------------------------------------------------------

    def request_lines(self) -> None:
        """Garbage request lines, missing versions, huge methods."""
        t = self.t
        raw = [
            ("binary garbage", b"\x00\x01\x02\xff\xfe garbage\r\n\r\n"),
            ("empty lines only", b"\r\n\r\n\r\n\r\n"),
            ("method only", b"GET\r\n\r\n"),
            ("missing version", b"GET /healthz\r\n\r\n"),
            ("HTTP/0.9 style", b"GET /healthz\r\n"),
            ("version HTTP/2.0", b"GET /api/v1/requests/nope HTTP/2.0\r\nHost: x\r\n\r\n"),
            ("version HTTP/9.9", b"GET /api/v1/requests/nope HTTP/9.9\r\nHost: x\r\n\r\n"),
            ("version lowercase", b"GET /api/v1/requests/nope http/1.1\r\nHost: x\r\n\r\n"),
            ("version garbage", b"GET /api/v1/requests/nope FOO/1.1\r\nHost: x\r\n\r\n"),
            ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            ("tls client hello", bytes.fromhex("160301002a010000260303") + bytes(32) + b"\x00\x00\x02\x00\x2f\x01\x00"),
            ("bare LF line endings", b"GET /api/v1/requests/bad! HTTP/1.1\nHost: x\n\n"),
            ("CR only line endings", b"GET /api/v1/requests/bad! HTTP/1.1\rHost: x\r\r"),
            ("double space", b"GET  /api/v1/requests/bad! HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("tab separator", b"GET\t/api/v1/requests/bad!\tHTTP/1.1\r\nHost: x\r\n\r\n"),
            ("huge method 70 KiB", b"A" * 70_000 + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("method with NUL", b"GE\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("method with slash", b"G/T /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("lowercase method", b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("unknown method", b"FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("DELETE on a GET path", b"DELETE /api/v1/time HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("TRACE", b"TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("GET on purchase", self.req("GET", t.purchase())),
            ("PUT on purchase", self.req("PUT", t.purchase(), body=self.bad_purchase_body())),
            ("CONNECT authority-form", b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"),
            ("OPTIONS asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("header without colon", b"GET /api/v1/requests/nope HTTP/1.1\r\nHost x\r\n\r\n"),
            ("header space before colon", b"GET /api/v1/requests/nope HTTP/1.1\r\nHost : x\r\n\r\n"),
            ("obs-fold header", b"GET /api/v1/requests/nope HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n"),
            ("NUL in header value", b"GET /api/v1/requests/nope HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
            ("only a request line, then close", b"GET /api/v1/requests/nope HTTP/1.1\r\n"),
        ]
        for name, data in raw:
            slow = not data.endswith(b"\r\n\r\n") and not data.endswith(b"\n\n") and not data.endswith(b"\r\r")
            self.add("request_line", name, data, slow=slow)
        for i in range(12):
            junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 400)))
            self.add("request_line", f"random bytes #{i}", junk + b"\r\n\r\n")

    def bad_uris(self) -> None:
        """Odd request targets, absolute-form, bad percent-encoding."""
        t = self.t
        targets = [
            "/../../etc/passwd",
            "//",
            "/api/v1/requests/" + "a/" * 20,
            "/" + "x" * 9000,
            "/" + "x" * 70_000,
            "/api/v1/requests/a%20b",
            "/api/v1/requests/%00",
            "/api/v1/requests/a?x=" + "y" * 10_000,
            "/api/v1/rounds?date=9999-99-99",
            "/api/v1/rounds?date=2026-02-30",
            "/api/v1/rounds?date=%00",
            "/api/v1/rounds?date=" + "1" * 5000,
            "/api/v1/sales/" + "s" * 65,
            "/api/v1/sales/%2e%2e",
            "/api/v1/orders/0123456789abcdef?user_id=" + "u" * 129,
            "/api/v1/orders/0123456789abcdef?user_id=a%20b",
            "/api/v1/orders/0123456789abcdef",
            "/api/v1/orders/0123456789ABCDEG?user_id=u1",
            "/api/v1/requests/a#frag",
            "api/v1/requests/no-leading-slash",
            "/api/v1/requests/nope/../../healthz/x",
            t.purchase() + "/extra",
            "/\\api\\v1\\time\\x",
        ]
        for tg in targets:
            self.add("bad_uri", tg[:60], self.req("GET", tg))
        self.add("bad_uri", "space in target", b"GET /api/v1/requests/a b HTTP/1.1\r\nHost: x\r\n\r\n")
        self.add("bad_uri", "non-ascii target", b"GET /api/v1/requests/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.add("bad_uri", "control char target", b"GET /api/v1/requests/\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Absolute-form: valid HTTP, so only targets that must be refused.
        for tg in [
            f"http://{t.host}/api/v1/requests/{self.uid('r')}",
            f"http://evil.example/api/v1/requests/{self.uid('r')}",
            f"http://user:pw@{t.host}/api/v1/requests/bad!",
            f"https://{t.host}:99999/api/v1/requests/nope",
            f"ftp://{t.host}/admin/v1/sales",
            f"http://{t.host}" + t.purchase(item=NO_ITEM),
            "http:/api/v1/requests/nope",
            "http://[::1/api/v1/requests/nope",
        ]:
            method = "POST" if tg.endswith("purchase") else "GET"
            body = json.dumps({"user_id": "u1", "request_id": self.uid("r")}) if method == "POST" else None
            self.add("absolute_form", tg[:60], self.req(method, tg, body=body))
        # Invalid percent-encoding in every id position.
        for enc in ["%", "%%", "%G1", "%zz", "%E2%82", "%C0%AF", "%FF", "%2F", "%00", "a%2", "%u0041"]:
            self.add(
                "percent_encoding",
                f"sale {enc}",
                self.req("POST", t.purchase(sale=enc, item=NO_ITEM), body=self.bad_purchase_body()),
            )
            self.add(
                "percent_encoding", f"item {enc}", self.req("POST", t.token_path(item=enc), body='{"user_id":"u1"}')
            )
            self.add("percent_encoding", f"request {enc}", self.req("GET", f"/api/v1/requests/{enc}"))
            self.add("percent_encoding", f"order {enc}", self.req("GET", f"/api/v1/orders/{enc}?user_id=u1"))
            self.add(
                "percent_encoding",
                f"admin sale {enc}",
                self.req("GET", t.admin_sale(enc), [t.bearer()]),
            )

    def big_headers(self) -> None:
        """64 KiB and more of headers; a single 64 KiB header."""
        t = self.t
        body = self.bad_purchase_body()
        for total_kib, each in [(64, 1024), (65, 1024), (128, 1024), (64, 64), (400, 4096), (1024, 8192)]:
            n = total_kib * 1024 // each
            hdrs = [(f"X-F{i}", "v" * (each - len(f"X-F{i}: ") - 2)) for i in range(n)]
            self.add("big_headers", f"{n} headers, {total_kib} KiB", self.req("POST", t.purchase(), hdrs, body))
        hdrs = [("X-Dup", "a" * 200)] * 400
        self.add("big_headers", "400 duplicate headers", self.req("GET", f"/api/v1/requests/{self.uid('r')}", hdrs))
        for name, size in [("64 KiB", 64 * 1024), ("64 KiB + 1", 64 * 1024 + 1), ("512 KiB", 512 * 1024)]:
            self.add("huge_header", f"X-Big {name}", self.req("POST", t.purchase(), [("X-Big", "b" * size)], body))
            self.add(
                "huge_header",
                f"Authorization {name}",
                self.req("GET", t.admin_sale(), [("Authorization", "Bearer " + "A" * size)]),
                expect=frozenset({"bad_token", "closed"}),
                strict=True,
            )
            self.add(
                "huge_header",
                f"X-Forwarded-For {name}",
                self.req(
                    "POST",
                    t.token_path(item=NO_ITEM),
                    [("X-Forwarded-For", ("1.2.3.4, " * (size // 9))[:size])],
                    '{"user_id":"u1"}',
                ),
            )
            self.add(
                "huge_header",
                f"Cookie {name}",
                self.req("GET", f"/api/v1/requests/{self.uid('r')}", [("Cookie", "c=" + "d" * size)]),
            )
        self.add(
            "huge_header",
            "64 KiB header name",
            self.req("GET", f"/api/v1/requests/{self.uid('r')}", [("X" * 65536, "v")]),
        )

    def slow(self) -> None:
        """Slowloris headers, slow bodies, idle connections: each bounded
        by the header timeout plus a margin."""
        t = self.t
        limit = t.header_timeout_s + MARGIN_S
        step = 0.5
        steps = int(limit / step) + 1
        head = self.req("POST", t.purchase(item=NO_ITEM))[:-2]  # headers not finished
        trickle = [(0.0, head)] + [(step, f"X-S{i}: s\r\n".encode()) for i in range(steps)]
        self.add("slow_headers", "header lines trickled", trickle, slow=True, deadline_s=limit + 1)
        one_byte = self.req("GET", f"/api/v1/requests/{self.uid('r')}")
        self.add(
            "slow_headers",
            "request trickled byte by byte",
            [(step, one_byte[i : i + 1]) for i in range(min(len(one_byte) - 1, steps))],
            slow=True,
            deadline_s=limit + 1,
        )
        self.add("slow_headers", "idle connection", [(0.0, b"")], slow=True, deadline_s=limit + 1)
        self.add("slow_headers", "half a request line", [(0.0, b"POST /api/v1/sa")], slow=True, deadline_s=limit + 1)
        for name, path, body in [
            ("purchase", t.purchase(), self.bad_purchase_body()),
            ("token", t.token_path(item=NO_ITEM), '{"user_id":"u1"}'),
            ("admin", t.admin_sale(), json.dumps(self.sale_body())),
            ("pay", f"/api/v1/orders/{self.order_id()}/pay", '{"user_id":"u1"}'),
        ]:
            hdrs = [t.bearer()] if name == "admin" else []
            full = self.req("POST" if name != "admin" else "PUT", path, hdrs, body)
            split = full.index(b"\r\n\r\n") + 4
            parts = [(0.0, full[:split])] + [
                (step, full[split + i : split + i + 1]) for i in range(min(steps, len(full) - split - 1))
            ]
            self.add("slow_body", f"{name} body trickled", parts, slow=True, deadline_s=limit + 1)
            short = self.req(
                "POST" if name != "admin" else "PUT", path, hdrs + [("Content-Length", str(len(body) + 50))], body
            )
            self.add(
                "content_length",
                f"{name}: Content-Length 50 more than the body",
                short,
                slow=True,
                deadline_s=limit + 1,
            )
        for cl in ["4096", "4097", "1048577", "1000000000000", "18446744073709551615"]:
            data = self.req("POST", t.purchase(), [("Content-Length", cl)], b'{"user_id":')
            self.add("huge_content_length", f"purchase Content-Length {cl}", data, slow=True, deadline_s=limit + 1)
        data = self.req("PUT", t.admin_sale(), [t.bearer(), ("Content-Length", "1000000000000")], b"{")
        self.add("huge_content_length", "admin Content-Length 1e12", data, slow=True, deadline_s=limit + 1)

    def pipelined(self) -> None:
        """A valid request followed by garbage on the same connection."""
        t = self.t
        ok = self.req("GET", "/healthz")
        garbage = [
            b"\x00\xff\xfegarbage\r\n\r\n",
            b"GET /healthz\r\n\r\n",
            self.req("POST", t.purchase(), body=self.bad_purchase_body()),
            self.req("POST", t.purchase(), [("Content-Length", "-1")], b"{}"),
            b"POST "
            + t.purchase().encode()
            + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n",
            self.req("PUT", t.admin_sale(), body=json.dumps(self.sale_body())),
        ]
        for i, g in enumerate(garbage):
            expect = frozenset({"bad_token", "closed"}) if b"/admin/" in g else frozenset()
            self.add(
                "pipelined",
                f"healthz then garbage #{i}",
                ok + g,
                answers_wanted=2,
                ok_2xx=1,
                expect=expect,
                strict=bool(expect),
            )
        # The first request's body claims fewer bytes than follow: the rest
        # is read as the next request.
        body = self.bad_purchase_body()
        smuggle = self.req(
            "POST", t.purchase(), [("Content-Length", "2")], body.encode() + b"\r\n" + self.req("GET", "/healthz")
        )
        self.add("pipelined", "short Content-Length smuggles a request", smuggle, answers_wanted=2, ok_2xx=0)

    def invalid_utf8(self) -> None:
        """Invalid UTF-8 in paths, headers and JSON bodies."""
        t = self.t
        bad = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82"]
        for b in bad:
            h = b.hex()
            self.add("invalid_utf8", f"path {h}", b"GET /api/v1/requests/a" + b + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            self.add(
                "invalid_utf8",
                f"sale path {h}",
                b"POST /api/v1/sales/s" + b + b"/items/i/purchase HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            )
            self.add(
                "invalid_utf8",
                f"auth header {h}",
                self.req("GET", t.admin_sale(), [("Authorization", b"Bearer " + t.token.encode() + b)]),
                expect=frozenset({"bad_token", "closed"}),
                strict=True,
            )
            self.add(
                "invalid_utf8",
                f"x-forwarded-for {h}",
                self.req("POST", t.token_path(item=NO_ITEM), [("X-Forwarded-For", b"1.2.3.4" + b)], '{"user_id":"u1"}'),
            )
            self.add(
                "invalid_utf8",
                f"purchase user_id {h}",
                self.req(
                    "POST",
                    t.purchase(),
                    body=b'{"user_id":"u' + b + b'","request_id":"' + self.uid("r").encode() + b'"}',
                ),
            )
            self.add(
                "invalid_utf8",
                f"purchase token {h}",
                self.req(
                    "POST", t.purchase(item=NO_ITEM), body=b'{"user_id":"u1","request_id":"r1","token":"' + b + b'"}'
                ),
            )
            self.add(
                "invalid_utf8", f"token body {h}", self.req("POST", t.token_path(), body=b'{"user_id":"' + b + b'"}')
            )
            self.add(
                "invalid_utf8",
                f"admin title {h}",
                self.req(
                    "PUT",
                    t.admin_sale(),
                    [t.bearer()],
                    json.dumps(self.sale_body(item={"title": "T"}))
                    .replace('"T"', '"T\x00"')
                    .encode()
                    .replace(b"\x00", b),
                ),
            )
            self.add(
                "invalid_utf8",
                f"pay body {h}",
                self.req("POST", f"/api/v1/orders/{self.order_id()}/pay", body=b'{"user_id":"' + b + b'"}'),
            )
        self.add(
            "invalid_utf8",
            "lone surrogate escape",
            self.req("POST", t.purchase(), body='{"user_id":"\\ud800","request_id":"r1"}'),
        )
        self.add(
            "invalid_utf8",
            "UTF-16 body",
            self.req("POST", t.purchase(), body='{"user_id":"u 1","request_id":"r1"}'.encode("utf-16")),
        )
        self.add(
            "invalid_utf8",
            "BOM before JSON",
            self.req("POST", t.purchase(), body=b"\xef\xbb\xbf" + self.bad_purchase_body().encode()),
        )

    def duplicate_keys(self) -> None:
        """Duplicate JSON keys: serde refuses them (400 invalid_field); a
        different answer means a later or earlier value was silently used."""
        t = self.t
        dup = frozenset({"invalid_field"})
        rid = self.uid("r")
        for name, body in [
            ("user_id twice", f'{{"user_id":"u1","user_id":"u2","request_id":"{rid}"}}'),
            ("request_id twice", f'{{"user_id":"u1","request_id":"{rid}","request_id":"x"}}'),
            ("quantity twice", f'{{"user_id":"u1","request_id":"{rid}","quantity":1,"quantity":2}}'),
            ("token twice", f'{{"user_id":"u1","request_id":"{rid}","token":"a","token":"b"}}'),
        ]:
            # On an item that does not exist: accepted duplicates would be
            # answered unknown_item (404), never a purchase.
            self.add(
                "duplicate_keys", f"purchase {name}", self.req("POST", t.purchase(item=NO_ITEM), body=body), expect=dup
            )
        self.add(
            "duplicate_keys",
            "token user_id twice",
            self.req("POST", t.token_path(item=NO_ITEM), body='{"user_id":"u1","user_id":"u2"}'),
            expect=dup,
        )
        self.add(
            "duplicate_keys",
            "pay user_id twice",
            self.req("POST", f"/api/v1/orders/{self.order_id()}/pay", body='{"user_id":"u1","user_id":"u2"}'),
            expect=dup,
        )
        base = self.sale_body()
        item = json.dumps(base["items"][0])
        for name, raw in [
            (
                "start_ms twice",
                f'{{"start_ms":{base["start_ms"]},"start_ms":{base["start_ms"]},"end_ms":{base["end_ms"]},"items":[{item}]}}',
            ),
            (
                "end_ms twice",
                f'{{"start_ms":{base["start_ms"]},"end_ms":{base["end_ms"]},"end_ms":1,"items":[{item}]}}',
            ),
            ("items twice", f'{{"start_ms":{base["start_ms"]},"end_ms":{base["end_ms"]},"items":[{item}],"items":[]}}'),
            (
                "stock twice",
                f'{{"start_ms":{base["start_ms"]},"end_ms":{base["end_ms"]},"items":[{item[:-1]},"stock":7}}]}}',
            ),
        ]:
            self.add("duplicate_keys", f"admin {name}", self.req("PUT", t.admin_sale(), [t.bearer()], raw), expect=dup)

    NUMBERS = (
        "0",
        "1",
        "-1",
        "-0",
        "4294967295",
        "4294967296",
        "9007199254740993",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "1.0",
        "1.5",
        "-1.5",
        "1e3",
        "1E9",
        "1e309",
        "-1e309",
        "1e-7",
        "007",
        "0x10",
        "+1",
        "NaN",
        "Infinity",
        "null",
        "true",
        '"1"',
        "[]",
        "{}",
        "",
    )

    def numbers(self) -> None:
        """Numbers at and past every bound in the sale body and quantity.
        The run's sale has started: a valid body is answered 409
        sale_started, so no case can replace it."""
        t = self.t
        bounds = {
            "price_cents": [str(U64_MAX)],
            "stock": [str(STOCK_MAX - 1), str(STOCK_MAX), str(STOCK_MAX + 1)],
            "per_user_limit": [str(PER_USER_LIMIT_MAX), str(PER_USER_LIMIT_MAX + 1), str(U32_MAX), str(U32_MAX + 1)],
            "start_ms": [str(SALE_END_MS_MAX - 1), str(SALE_END_MS_MAX), str(U64_MAX)],
            "end_ms": [str(SALE_END_MS_MAX), str(SALE_END_MS_MAX + 1), str(U64_MAX)],
        }
        for fld, extra in bounds.items():
            for num in (*self.NUMBERS, *extra):
                body = self.sale_body()
                marker = "@@NUM@@"
                if fld in ("start_ms", "end_ms"):
                    body[fld] = marker
                else:
                    body["items"][0][fld] = marker
                raw = json.dumps(body).replace(f'"{marker}"', num)
                self.add("numbers", f"{fld}={num or '<empty>'}", self.req("PUT", t.admin_sale(), [t.bearer()], raw))
        for num in (*self.NUMBERS, "1000", "1001", "999"):
            raw = f'{{"user_id":"u1","request_id":"{self.uid("r")}","quantity":{num}}}'
            self.add("numbers", f"quantity={num or '<empty>'}", self.req("POST", t.purchase(item=NO_ITEM), body=raw))
        for num in ["0", "-1", "1e309", "18446744073709551616"]:
            raw = f'{{"user_id":{num},"request_id":"r1"}}'
            self.add("numbers", f"user_id={num}", self.req("POST", t.purchase(), body=raw))
        # Many items: at the bound (409), past it (invalid_items), none.
        many = self.sale_body()
        many["items"] = [dict(many["items"][0], item_id=f"i{i}") for i in range(ITEMS_PER_SALE_MAX)]
        self.add(
            "numbers",
            "items=10000",
            self.req("PUT", t.admin_sale(), [t.bearer()], json.dumps(many)),
            expect=frozenset({"sale_started"}),
        )
        many["items"].append(dict(many["items"][0], item_id="one-more"))
        self.add(
            "numbers",
            "items=10001",
            self.req("PUT", t.admin_sale(), [t.bearer()], json.dumps(many)),
            expect=frozenset({"invalid_items", "body_too_large"}),
        )
        self.add(
            "numbers",
            "items=0",
            self.req("PUT", t.admin_sale(), [t.bearer()], json.dumps(self.sale_body(items=[]))),
            expect=frozenset({"invalid_items"}),
        )
        twice = self.sale_body()
        twice["items"] = twice["items"] * 2
        self.add(
            "numbers",
            "same item twice",
            self.req("PUT", t.admin_sale(), [t.bearer()], json.dumps(twice)),
            expect=frozenset({"invalid_items"}),
        )

    def id_limits(self) -> None:
        """Ids at limit-1, limit, limit+1 and empty, in every position."""
        t = self.t
        for n in (ID_LEN_MAX - 1, ID_LEN_MAX, ID_LEN_MAX + 1, 0):
            s = self.ident(n)
            ok = 0 < n <= ID_LEN_MAX
            body = json.dumps({"user_id": "u1", "request_id": self.uid("r")})
            self.add(
                "id_limits",
                f"purchase sale id len {n}",
                self.req(
                    "POST",
                    t.purchase(sale=s, item=NO_ITEM) if n else f"/api/v1/sales//items/{NO_ITEM}/purchase",
                    body=body,
                ),
                expect=frozenset({"unknown_item"} if ok else {"invalid_field", "not_found"}),
            )
            self.add(
                "id_limits",
                f"purchase item id len {n}",
                self.req("POST", t.purchase(item=s) if n else f"/api/v1/sales/{t.sale}/items//purchase", body=body),
                expect=frozenset({"unknown_item"} if ok else {"invalid_field", "not_found"}),
            )
            self.add(
                "id_limits",
                f"token item id len {n}",
                self.req(
                    "POST",
                    t.token_path(item=s) if n else f"/api/v1/sales/{t.sale}/items//token",
                    body='{"user_id":"u1"}',
                ),
                expect=frozenset({"unknown_item"} if ok else {"invalid_field", "not_found"}),
            )
            # An admin PUT on a fresh id with an invalid window: the id check
            # comes first (invalid_field), then the window.
            bad_window = json.dumps(self.sale_body(start_ms=2_000, end_ms=1_000))
            path = t.admin_sale(s) if n else "/admin/v1/sales/"
            self.add(
                "id_limits",
                f"admin sale id len {n}",
                self.req("PUT", path, [t.bearer()], bad_window),
                expect=frozenset({"invalid_window"} if ok else {"invalid_field", "method_not_allowed"}),
            )
            if n:  # an empty one is the list of sales, a valid call
                self.add(
                    "id_limits",
                    f"admin get sale id len {n}",
                    self.req("GET", t.admin_sale(s), [t.bearer()]),
                    expect=frozenset({"unknown_sale"} if ok else {"invalid_field"}),
                )
            item_body = self.sale_body(item={"item_id": s})
            self.add(
                "id_limits",
                f"admin item_id len {n}",
                self.req("PUT", t.admin_sale(), [t.bearer()], json.dumps(item_body)),
                expect=frozenset({"sale_started"} if ok else {"invalid_field"}),
            )
        for n in (CLIENT_ID_LEN_MAX - 1, CLIENT_ID_LEN_MAX, CLIENT_ID_LEN_MAX + 1, 0):
            s = self.ident(n)
            ok = 0 < n <= CLIENT_ID_LEN_MAX
            exp = frozenset({"unknown_item"} if ok else {"invalid_field"})
            self.add(
                "id_limits",
                f"purchase user_id len {n}",
                self.req(
                    "POST", t.purchase(item=NO_ITEM), body=json.dumps({"user_id": s, "request_id": self.uid("r")})
                ),
                expect=exp,
            )
            self.add(
                "id_limits",
                f"purchase request_id len {n}",
                self.req("POST", t.purchase(item=NO_ITEM), body=json.dumps({"user_id": "u1", "request_id": s})),
                expect=exp,
            )
            self.add(
                "id_limits",
                f"token user_id len {n}",
                self.req("POST", t.token_path(item=NO_ITEM), body=json.dumps({"user_id": s})),
                expect=exp,
            )
            if n:
                self.add(
                    "id_limits",
                    f"status request_id len {n}",
                    self.req("GET", f"/api/v1/requests/{s}"),
                    expect=frozenset({"unknown_request"} if ok else {"invalid_field"}),
                )
            self.add(
                "id_limits",
                f"order user_id len {n}",
                self.req("GET", f"/api/v1/orders/{self.order_id()}?user_id={s}"),
                expect=frozenset({"unknown_order"} if ok else {"invalid_field"}),
            )
            self.add(
                "id_limits",
                f"pay user_id len {n}",
                self.req("POST", f"/api/v1/orders/{self.order_id()}/pay", body=json.dumps({"user_id": s})),
                expect=frozenset({"unknown_order"} if ok else {"invalid_field"}),
            )
            # The blacklist: a valid id would change state, so with the
            # token only invalid ids; without it any id must be 401.
            if not ok and n:
                self.add(
                    "id_limits",
                    f"blacklist user len {n}",
                    self.req("PUT", f"/admin/v1/blacklist/users/{s}", [t.bearer()]),
                    expect=frozenset({"invalid_field"}),
                )
            self.add(
                "admin_auth",
                f"blacklist user len {n}, no token",
                self.req("PUT", f"/admin/v1/blacklist/users/{s}"),
                expect=frozenset({"bad_token"} if n else {"not_found"}),
                strict=bool(n),
            )
        for n in (15, 16, 17, 0):
            oid = self.order_id()[:n] if n <= 16 else self.order_id() + "a"
            exp = frozenset({"unknown_order"} if n == 16 else {"invalid_order_id", "not_found", "method_not_allowed"})
            self.add("id_limits", f"order id len {n}", self.req("GET", f"/api/v1/orders/{oid}?user_id=u1"), expect=exp)
            self.add(
                "id_limits",
                f"cancel order id len {n}",
                self.req("POST", f"/api/v1/orders/{oid}/cancel", body='{"user_id":"u1"}'),
                expect=exp,
            )
        for n in (TITLE_BYTES_MAX - 1, TITLE_BYTES_MAX, TITLE_BYTES_MAX + 1, TITLE_BYTES_MAX + 2):
            exp = frozenset({"sale_started" if n <= TITLE_BYTES_MAX else "invalid_title"})
            self.add(
                "id_limits",
                f"title {n} bytes",
                self.req("PUT", t.admin_sale(), [t.bearer()], json.dumps(self.sale_body(item={"title": "t" * n}))),
                expect=exp,
            )
            multi = "t" * (n % 2) + "é" * (n // 2)  # é is 2 bytes in UTF-8
            self.add(
                "id_limits",
                f"title {n} bytes, multi-byte",
                self.req(
                    "PUT",
                    t.admin_sale(),
                    [t.bearer()],
                    json.dumps(self.sale_body(item={"title": multi}), ensure_ascii=False),
                ),
                expect=exp,
            )
        for ip in ["", "1.2.3", "256.1.1.1", "::g", "1.2.3.4%eth0", "x" * 100]:
            if ip:
                self.add(
                    "id_limits",
                    f"blacklist ip {ip[:20]}",
                    self.req("PUT", f"/admin/v1/blacklist/ips/{ip}", [t.bearer()]),
                    expect=frozenset({"invalid_ip"}),
                )
        self.add(
            "id_limits",
            "blacklist of another kind",
            self.req("PUT", "/admin/v1/blacklist/cats/felix", [t.bearer()]),
            expect=frozenset({"not_found"}),
        )

    def content_types(self) -> None:
        """Wrong content types (with bodies that are refused anyway)."""
        t = self.t
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
            "",
            "a" * 5000,
            "application/json\x00",
        ]:
            self.add(
                "content_type",
                f"purchase {ct[:30]!r}",
                self.req("POST", t.purchase(), [("Content-Type", ct)], self.bad_purchase_body()),
            )
            self.add(
                "content_type",
                f"form body {ct[:30]!r}",
                self.req("POST", t.purchase(item=NO_ITEM), [("Content-Type", ct)], "user_id=u1&request_id=r1"),
                expect=frozenset({"malformed_json"}),
            )
            self.add(
                "content_type",
                f"admin {ct[:30]!r}",
                self.req("PUT", t.admin_sale(), [t.bearer(), ("Content-Type", ct)], "start_ms=1&end_ms=2"),
                expect=frozenset({"malformed_json"}),
            )
        self.add(
            "content_type",
            "multipart purchase",
            self.req(
                "POST",
                t.purchase(),
                [("Content-Type", "multipart/form-data; boundary=zz")],
                '--zz\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nu1\r\n--zz--\r\n',
            ),
            expect=frozenset({"malformed_json"}),
        )

    def chunked(self) -> None:
        """Chunked bodies with bad sizes and framing."""
        t = self.t
        body = self.bad_purchase_body().encode()
        good = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        variants = [
            ("valid chunked, refused body", good),
            ("size not hex", b"zz\r\n" + body + b"\r\n0\r\n\r\n"),
            ("negative size", b"-1\r\n" + body + b"\r\n0\r\n\r\n"),
            ("size overflows u64", b"1" + b"0" * 20 + b"\r\n" + body + b"\r\n0\r\n\r\n"),
            ("size 16 hex f", b"f" * 16 + b"\r\n" + body + b"\r\n0\r\n\r\n"),
            ("size too small", b"2\r\n" + body + b"\r\n0\r\n\r\n"),
            ("size with leading spaces", b"  %x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"),
            ("bad extension", b"%x;\x00=\r\n" % len(body) + body + b"\r\n0\r\n\r\n"),
            ("huge extension", b"%x;" % len(body) + b"e" * 70_000 + b"\r\n" + body + b"\r\n0\r\n\r\n"),
            ("missing CRLF after data", b"%x\r\n" % len(body) + body + b"0\r\n\r\n"),
            ("LF only", b"%x\n" % len(body) + body + b"\n0\n\n"),
            ("trailer garbage", b"%x\r\n" % len(body) + body + b"\r\n0\r\nX: \x00\r\n\r\n"),
            (
                "many tiny chunks",
                b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n",
            ),
            ("body past 4 KiB", b"1000\r\n" + b" " * 4096 + b"\r\n1000\r\n" + b" " * 4096 + b"\r\n0\r\n\r\n"),
        ]
        for name, chunked_body in variants:
            for te in ["chunked"]:
                data = self.req("POST", t.purchase(), [("Transfer-Encoding", te)], chunked_body, content_length=False)
                self.add("chunked", name, data, deadline_s=t.header_timeout_s + MARGIN_S + 1)
        for te in [
            "chunked, chunked",
            "gzip, chunked",
            "chunked, gzip",
            "identity",
            "Chunked",
            " chunked",
            "chunked\x0b",
            "x",
        ]:
            data = self.req("POST", t.purchase(), [("Transfer-Encoding", te)], good, content_length=False)
            self.add("chunked", f"Transfer-Encoding {te!r}", data, deadline_s=t.header_timeout_s + MARGIN_S + 1)
        data = self.req(
            "POST",
            t.purchase(),
            [("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
            good,
            content_length=False,
        )
        self.add("chunked", "chunked and Content-Length", data, deadline_s=t.header_timeout_s + MARGIN_S + 1)
        data = self.req(
            "POST",
            f"/api/v1/orders/{self.order_id()}/pay",
            [("Transfer-Encoding", "chunked")],
            b"ffffffff\r\n" + b"{" * 100,
            content_length=False,
        )
        self.add(
            "chunked", "pay: huge chunk, short data", data, slow=True, deadline_s=t.header_timeout_s + MARGIN_S + 1
        )

    def content_lengths(self) -> None:
        """Content-Length values that lie or do not parse."""
        t = self.t
        body = self.bad_purchase_body()
        for name, cl in [
            ("zero with a body", "0"),
            ("negative", "-1"),
            ("plus sign", f"+{len(body)}"),
            ("hex", hex(len(body))),
            ("spaces inside", f"{len(body)} 0"),
            ("list of equal values", f"{len(body)}, {len(body)}"),
            ("list of different values", f"{len(body)}, 1"),
            ("overflows u64", "1" + "0" * 25),
            ("empty", ""),
            ("letters", "abc"),
            ("float", f"{len(body)}.0"),
        ]:
            data = self.req("POST", t.purchase(), [("Content-Length", cl)], body)
            self.add("content_length", name, data, deadline_s=t.header_timeout_s + MARGIN_S + 1)
        two = self.req("POST", t.purchase(), [("Content-Length", str(len(body))), ("Content-Length", "1")], body)
        self.add("content_length", "two different headers", two)
        shorter = self.req("POST", t.token_path(), [("Content-Length", "5")], '{"user_id":"u1"}')
        self.add(
            "content_length", "token: shorter than the body", shorter, deadline_s=t.header_timeout_s + MARGIN_S + 1
        )
        big = self.req("POST", t.purchase(), [], "{" + " " * 5000 + "}")
        self.add("content_length", "purchase body over 4 KiB", big, expect=frozenset({"body_too_large", "closed"}))
        big = self.req("POST", t.token_path(), [], '{"user_id":"' + "u" * 2000 + '"}')
        self.add("content_length", "token body over 1 KiB", big, expect=frozenset({"body_too_large", "closed"}))
        big = self.req("PUT", t.admin_sale(), [t.bearer()], " " * (1 << 20) + "{}")
        self.add("content_length", "admin body over 1 MiB", big, expect=frozenset({"body_too_large", "closed"}))
        get_body = self.req("GET", f"/api/v1/requests/{self.uid('r')}", [], "x" * 100)
        self.add("content_length", "GET with a body", get_body)

    def admin_auth(self) -> None:
        """Admin calls without a token, with a wrong one, in odd forms:
        each must be 401 bad_token — a valid new sale without the token
        would be a 2xx."""
        t = self.t
        bad_token = frozenset({"bad_token"})
        fresh = self.uid("fz-new")
        valid = json.dumps(self.sale_body())
        auths = [
            ("none", []),
            ("wrong", [t.bearer("wrong")]),
            ("empty bearer", [("Authorization", "Bearer ")]),
            ("token + x", [t.bearer(t.token + "x")]),
            ("token prefix", [t.bearer(t.token[:-1])]),
            ("no scheme", [("Authorization", t.token)]),
            ("basic", [("Authorization", "Basic " + t.token)]),
            ("two spaces", [("Authorization", "Bearer  " + t.token)]),
            ("token in another header", [("X-Admin-Token", t.token)]),
            ("NUL-extended", [("Authorization", b"Bearer " + t.token.encode() + b"\x00")]),
        ]
        for name, hdrs in auths:
            self.add(
                "admin_auth",
                f"PUT new sale, auth {name}",
                self.req("PUT", t.admin_sale(fresh), hdrs, valid),
                expect=bad_token,
                strict=True,
            )
            self.add(
                "admin_auth",
                f"GET sale, auth {name}",
                self.req("GET", t.admin_sale(), hdrs),
                expect=bad_token,
                strict=True,
            )
            self.add(
                "admin_auth",
                f"GET sales, auth {name}",
                self.req("GET", "/admin/v1/sales", hdrs),
                expect=bad_token,
                strict=True,
            )
            self.add(
                "admin_auth",
                f"GET blacklist, auth {name}",
                self.req("GET", "/admin/v1/blacklist", hdrs),
                expect=bad_token,
                strict=True,
            )
            self.add(
                "admin_auth",
                f"block user, auth {name}",
                self.req("PUT", "/admin/v1/blacklist/users/u1", hdrs),
                expect=bad_token,
                strict=True,
            )
            self.add(
                "admin_auth",
                f"unblock ip, auth {name}",
                self.req("DELETE", "/admin/v1/blacklist/ips/127.0.0.1", hdrs),
                expect=bad_token,
                strict=True,
            )
        self.add(
            "admin_auth",
            "token in the query",
            self.req("GET", f"/admin/v1/sales?token={t.token}"),
            expect=bad_token,
            strict=True,
        )
        self.add(
            "admin_auth",
            "PUT sale with the token, started sale",
            self.req("PUT", t.admin_sale(), [t.bearer()], valid),
            expect=frozenset({"sale_started"}),
        )
        self.add(
            "admin_auth",
            "PATCH sale with the token",
            self.req("PATCH", t.admin_sale(), [t.bearer()], valid),
            expect=frozenset({"method_not_allowed"}),
        )

    def purchase_refusals(self) -> None:
        """Purchase, token, status and order calls that are refused."""
        t = self.t
        rid = self.uid("r")
        bodies = [
            ("not json", "nope", {"malformed_json"}),
            ("empty body", "", {"malformed_json"}),
            ("array", "[]", {"invalid_field"}),
            ("null", "null", {"invalid_field"}),
            ("truncated", '{"user_id":"u1","request_id":', {"malformed_json"}),
            ("nested deep", "[" * 1500 + "]" * 1500, {"malformed_json", "invalid_field"}),
            ("missing request_id", '{"user_id":"u1"}', {"invalid_field"}),
            ("user_id with space", json.dumps({"user_id": "a b", "request_id": rid}), {"invalid_field"}),
            ("request_id with slash", json.dumps({"user_id": "u1", "request_id": "a/b"}), {"invalid_field"}),
            ("quantity 0", json.dumps({"user_id": "u1", "request_id": rid, "quantity": 0}), {"invalid_quantity"}),
            (
                "trailing garbage",
                json.dumps({"user_id": "u!", "request_id": rid}) + "xx",
                {"malformed_json", "invalid_field"},
            ),
            ("escaped id chars", '{"user_id":"\\u0000","request_id":"r1"}', {"invalid_field"}),
        ]
        for name, body, exp in bodies:
            self.add(
                "purchase",
                name,
                self.req("POST", t.purchase(), body=body),
                expect=frozenset(exp | {"rate_limited_user"}),
            )
        if t.tokens_required:
            # The only bodies here with valid ids on the real item: they
            # must be refused for the token.
            for name, tok in [
                ("no token", None),
                ("garbage token", "x"),
                ("forged token", f"4000000000000.{'0' * 64}"),
                ("expired-looking token", f"1.{'a' * 64}"),
                ("token u64 max", f"{U64_MAX}.{'f' * 64}"),
            ]:
                b = {"user_id": self.uid("u"), "request_id": self.uid("r")}
                if tok is not None:
                    b["token"] = tok
                self.add(
                    "purchase",
                    f"valid ids, {name}",
                    self.req("POST", t.purchase(), body=json.dumps(b)),
                    expect=frozenset({"token_missing", "token_invalid", "token_expired"}),
                    strict=True,
                )
        self.add("token", "no body", self.req("POST", t.token_path(), body=""), expect=frozenset({"malformed_json"}))
        self.add(
            "token",
            "unknown field",
            self.req("POST", t.token_path(item=NO_ITEM), body='{"user_id":"u1","x":1}'),
            expect=frozenset({"invalid_field"}),
        )
        self.add(
            "token",
            "user_id number",
            self.req("POST", t.token_path(), body='{"user_id":1}'),
            expect=frozenset({"invalid_field"}),
        )
        self.add(
            "status",
            "unknown request",
            self.req("GET", f"/api/v1/requests/{self.uid('r')}"),
            expect=frozenset({"unknown_request"}),
        )
        self.add("status", "bad chars", self.req("GET", "/api/v1/requests/a!b"), expect=frozenset({"invalid_field"}))
        self.add(
            "order",
            "no user_id",
            self.req("GET", f"/api/v1/orders/{self.order_id()}"),
            expect=frozenset({"invalid_field"}),
        )
        self.add(
            "order",
            "pay unknown",
            self.req("POST", f"/api/v1/orders/{self.order_id()}/pay", body='{"user_id":"u1"}'),
            expect=frozenset({"unknown_order"}),
        )
        self.add(
            "order",
            "cancel bad body",
            self.req("POST", f"/api/v1/orders/{self.order_id()}/cancel", body="{}"),
            expect=frozenset({"invalid_field"}),
        )

    def mutations(self, count: int) -> None:
        """Random byte-level mutations of refused requests."""
        t = self.t
        templates = [
            self.req(
                "POST",
                t.purchase(item=NO_ITEM),
                [("Content-Type", "application/json")],
                json.dumps({"user_id": "u1", "request_id": "r1", "quantity": 1}),
            ),
            self.req("POST", t.token_path(item=NO_ITEM), [], '{"user_id":"u1"}'),
            self.req("GET", "/api/v1/requests/fz-unknown-request"),
            self.req("GET", "/api/v1/orders/0123456789abcdef?user_id=u1"),
            self.req("POST", "/api/v1/orders/0123456789abcdef/pay", [], '{"user_id":"u1"}'),
            self.req(
                "PUT", t.admin_sale(self.uid("fz-mut")), [], json.dumps(self.sale_body(item={"item_id": "zz-mut-item"}))
            ),
        ]
        ops = ["flip", "insert", "delete", "dup", "crlf", "truncate", "splice"]
        for i in range(count):
            data = bytearray(self.rng.choice(templates))
            for _ in range(self.rng.randrange(1, 6)):
                op = self.rng.choice(ops)
                pos = self.rng.randrange(len(data)) if data else 0
                if op == "flip" and data:
                    data[pos] ^= 1 << self.rng.randrange(8)
                elif op == "insert":
                    data[pos:pos] = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 16)))
                elif op == "delete" and data:
                    del data[pos : pos + self.rng.randrange(1, 16)]
                elif op == "dup" and data:
                    data[pos:pos] = data[pos : pos + self.rng.randrange(1, 64)] * self.rng.randrange(2, 50)
                elif op == "crlf":
                    data[pos:pos] = b"\r\n"
                elif op == "truncate" and data:
                    del data[pos:]
                elif op == "splice":
                    other = self.rng.choice(templates)
                    j = self.rng.randrange(len(other))
                    data[pos:] = other[j:]
            self.add("mutation", f"mutation #{i}", bytes(data), deadline_s=MUTATION_WAIT_S, may_abandon=True)

    def build(self, mutations: int) -> list[Case]:
        """Every case: the slow ones first (they run on their own threads
        while the rest go by), then the systematic ones in a seeded order,
        then the random mutations that fill the rest of the time."""
        for step in (
            self.slow,
            self.request_lines,
            self.bad_uris,
            self.big_headers,
            self.pipelined,
            self.invalid_utf8,
            self.duplicate_keys,
            self.numbers,
            self.id_limits,
            self.content_types,
            self.chunked,
            self.content_lengths,
            self.admin_auth,
            self.purchase_refusals,
        ):
            step()
        slow = [c for c in self.cases if c.slow]
        fast = [c for c in self.cases if not c.slow]
        self.rng.shuffle(fast)
        self.cases = []
        self.mutations(mutations)
        return slow + fast + self.cases


# --------------------------------------------------------------------------
# Judging answers


@dataclass
class Tally:
    """Everything the summary prints."""

    cases: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    closed_without_answer: int = 0
    closed_after_answer: int = 0
    abandoned: int = 0
    failures: list[str] = field(default_factory=list)
    surprises: list[str] = field(default_factory=list)
    slowest: float = 0.0
    failed_cases: list[Case] = field(default_factory=list)
    started: list[tuple[float, Case]] = field(default_factory=list)
    first_refusal: float | None = None  # when the daemon first refused a connection
    lock: threading.Lock = field(default_factory=threading.Lock)


def show(data: bytes, limit: int = 160) -> str:
    """The first bytes of a request, printable."""
    s = repr(data[:limit])
    return s + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def judge(case: Case, out: Outcome) -> tuple[list[str], list[str]]:
    """Failures and surprises of one case."""
    fails, surprises = [], []
    sent = b"".join(d for _, d in case.chunks)
    where = f"[{case.kind}] {case.name}: request {show(sent)}"
    if out.refused:
        return [f"{where}: connection refused (crashed?)"], []
    if out.hung and not case.may_abandon:
        fails.append(f"{where}: no answer and no close after {out.elapsed:.1f}s (hang)")
    for i, a in enumerate(out.answers):
        code = a.code
        if a.status >= 500:
            if not (a.status == 503 and code in ALLOWED_503_CODES):
                fails.append(f"{where}: answered {a.status} {code} {a.body[:200]!r}")
        elif 200 <= a.status < 300 and i >= case.ok_2xx:
            if case.kind == "mutation" and valid_by_chance(sent):
                surprises.append(f"{where}: the mutation made a valid read ({a.status})")
            else:
                fails.append(f"{where}: answered {a.status} to garbage {a.body[:200]!r}")
        elif 300 <= a.status < 400:
            fails.append(f"{where}: answered {a.status}")
        if a.status >= 400 and len(a.body) > ERROR_BODY_BIG:
            surprises.append(f"{where}: a {len(a.body)}-byte {a.status} {code} answer (it echoes the request?)")
    if case.expect and out.answers:
        last = out.answers[case.ok_2xx] if len(out.answers) > case.ok_2xx else None
        # No error code: hyper refused the bytes before any handler ran.
        got = None if last is None or last.code is None else last.code
        if got is not None and got not in case.expect and got not in LIMIT_CODES:
            msg = f"{where}: expected {sorted(case.expect)}, got {last.status} {got}"
            (fails if case.strict else surprises).append(msg)
    elif case.expect and not out.answers and "closed" not in case.expect and case.strict:
        fails.append(f"{where}: expected {sorted(case.expect)}, the connection closed without an answer")
    return fails, surprises


def valid_by_chance(sent: bytes) -> bool:
    """Whether a mutated request happens to be a plain read of a public
    page (which rightly answers 200)."""
    return (
        re.match(rb"(GET|HEAD) /(api/v1/(time|rounds|openapi\.json|sales/[^/ ?]+)|healthz|readyz|metrics)[ ?]", sent)
        is not None
    )


def run_case(addr, case: Case, default_deadline: float, tally: Tally, verbose: bool = False) -> None:
    """Runs one case on its own connection and records it."""
    began = time.monotonic()
    out = exchange(addr, case.chunks, case.answers_wanted, case.deadline_s or default_deadline)
    fails, surprises = judge(case, out)
    with tally.lock:
        tally.started.append((began, case))
        if out.refused and tally.first_refusal is None:
            tally.first_refusal = began
        if verbose:
            got = " ".join(f"{a.status}:{a.code or '-'}" for a in out.answers) or "no answer"
            end = "closed" if out.closed else ("given up" if out.hung else "open")
            print(
                f"  {case.kind:<20} {case.name[:60]:<60} {got:<28} {end:<8} {out.elapsed:5.2f}s{'  FAIL' if fails else ''}"
            )
        tally.cases[case.kind] += 1
        for a in out.answers:
            tally.statuses[a.status] += 1
            tally.codes[a.code or "-"] += 1
        if out.closed and not out.answers:
            tally.closed_without_answer += 1
        elif out.closed:
            tally.closed_after_answer += 1
        if out.hung and case.may_abandon:
            tally.abandoned += 1
        tally.failures += fails
        if fails:
            tally.failed_cases.append(case)
        tally.surprises += surprises
        tally.slowest = max(tally.slowest, out.elapsed)


# --------------------------------------------------------------------------
# Setup and state checks (plain HTTP/1.1, Connection: close)


def call(addr, host, method, path, token=None, body=None, timeout=10.0) -> Answer:
    """One well-formed request; raises OSError when nothing answers."""
    hdrs = [("Connection", "close"), ("Content-Type", "application/json")]
    if token:
        hdrs.append(("Authorization", f"Bearer {token}"))
    data = request(method, path, hdrs, json.dumps(body) if body is not None else None, host=host)
    out = exchange(addr, [(0.0, data)], 1, timeout)
    if out.refused:
        raise ConnectionRefusedError(f"{method} {path}: connection refused")
    if not out.answers:
        raise OSError(f"{method} {path}: no answer")
    return out.answers[0]


def metric(text: str, name: str) -> float:
    """A sample's value in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return float(line.split()[-1])
    return 0.0


def metric_sum(text: str, prefix: str) -> float:
    """The sum of every sample whose name and labels start with ``prefix``."""
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def snapshot(addr, host, token, sale) -> dict:
    """The state a fuzz case must not change."""
    s = call(addr, host, "GET", f"/admin/v1/sales/{sale}", token)
    if s.status != 200:
        raise RuntimeError(f"GET /admin/v1/sales/{sale}: {s.status} {s.body[:300]!r}")
    m = call(addr, host, "GET", "/metrics")
    text = m.body.decode("utf-8", "replace")
    return {
        "stock": {i["item_id"]: i["stock"] for i in json.loads(s.body)["items"]},
        "requests": metric_sum(text, "seckill_requests{"),
        "connections_open": metric(text, "seckill_connections_open"),
        "metrics_status": m.status,
    }


def create_sale(addr, host, token, sale) -> None:
    """The run's sale: started a minute ago, so no admin PUT can replace it
    and no token is ``too_early``."""
    now = json.loads(call(addr, host, "GET", "/api/v1/time").body)["now_ms"]
    body = {
        "start_ms": now - 60_000,
        "end_ms": now + 3_600_000,
        "items": [{"item_id": FUZZ_ITEM, "title": "fuzz", "price_cents": 100, "stock": 5, "per_user_limit": 1}],
    }
    a = call(addr, host, "PUT", f"/admin/v1/sales/{sale}", token, body)
    if a.status != 200:
        raise RuntimeError(f"creating the sale: {a.status} {a.body[:300]!r}")


def tokens_required(addr, host, sale) -> bool:
    """Whether the daemon has a token key (the token endpoint answers
    409 tokens_disabled when it has none)."""
    a = call(addr, host, "POST", f"/api/v1/sales/{sale}/items/{FUZZ_ITEM}/token", body={"user_id": "fz-probe"})
    return a.code != "tokens_disabled"


def wait_connections_settle(addr, host, before: float, limit_s: float) -> float:
    """Waits until the daemon's open connections are back to where they
    were (our own probe counts as one); returns the last count."""
    end = time.monotonic() + limit_s
    while True:
        m = call(addr, host, "GET", "/metrics")
        n = metric(m.body.decode("utf-8", "replace"), "seckill_connections_open")
        if n <= before or time.monotonic() > end:
            return n
        time.sleep(0.25)


# --------------------------------------------------------------------------
# Main


def print_summary(tally: Tally, seconds: float, before: dict, after: dict | None) -> None:
    """The summary table."""
    print(f"\nfuzz-http: {sum(tally.cases.values())} cases in {seconds:.1f} s (slowest case {tally.slowest:.1f} s)")
    print(f"{'case kind':<22}{'cases':>8}")
    for k, n in sorted(tally.cases.items()):
        print(f"  {k:<20}{n:>8}")
    print(f"{'answer status':<22}{'count':>8}")
    for s, n in sorted(tally.statuses.items()):
        print(f"  {s:<20}{n:>8}")
    print(f"{'error code':<22}{'count':>8}")
    for c, n in sorted(tally.codes.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {c:<20}{n:>8}")
    print(f"  {'closed, no answer':<20}{tally.closed_without_answer:>8}")
    print(f"  {'closed after answer':<20}{tally.closed_after_answer:>8}")
    print(
        f"  {'mutations given up':<20}{tally.abandoned:>8}  (no answer within {MUTATION_WAIT_S} s: incomplete requests)"
    )
    if after:
        print(f"stock before {before['stock']} after {after['stock']}")
        print(
            f"requests on the status board before {before['requests']:.0f} after {after['requests']:.0f}; "
            f"open connections after {after['connections_open']:.0f}"
        )
    answers = sum(tally.statuses.values())
    if tally.codes["too_many_connections"] > answers / 10:
        print(
            f"WARNING: {tally.codes['too_many_connections']} of {answers} answers were 503 too_many_connections: the daemon's connections_max is below this run's concurrency (--workers plus the slow cases), so most cases never reached it"
        )
    print(f"surprises (4xx with another code than expected): {len(tally.surprises)}")
    for s in tally.surprises[:40]:
        print(f"  ~ {s}")
    print(f"failures: {len(tally.failures)}")
    for f in tally.failures[:60]:
        print(f"  ! {f}")


def run_all(addr, cases, args, default_deadline, tally, start) -> None:
    """Runs the slow cases all at once on their own threads (each waits
    out the header timeout), and the others on ``--workers`` connections
    until the time budget is used up."""
    slow = [c for c in cases if c.slow]
    fast = [c for c in cases if not c.slow]
    with (
        ThreadPoolExecutor(max_workers=max(1, len(slow))) as slow_pool,
        ThreadPoolExecutor(max_workers=args.workers) as pool,
    ):
        waiting = [slow_pool.submit(run_case, addr, c, default_deadline, tally, args.verbose) for c in slow]
        pending = []
        for case in fast:
            if time.monotonic() - start > args.seconds or tally.first_refusal is not None:
                break
            pending.append(pool.submit(run_case, addr, case, default_deadline, tally, args.verbose))
            # Keep the queue short so the time budget is honoured.
            while len(pending) > args.workers * 2:
                time.sleep(0.002)
                pending = [f for f in pending if not f.done()]
        for f in pending + waiting:
            f.result()


def suspects(tally: Tally, window_s: float) -> list[Case]:
    """The cases that started in the ``window_s`` seconds before the daemon
    first refused a connection, and had not been refused themselves: one
    of them probably brought it down."""
    if tally.first_refusal is None:
        return []
    failed = {id(c) for c in tally.failed_cases}
    return [
        c
        for began, c in sorted(tally.started, key=lambda x: x[0])
        if tally.first_refusal - window_s <= began < tally.first_refusal and id(c) not in failed
    ]


def dump_cases(path: str, cases: list[Case]) -> None:
    """One JSON line per case: kind, name and each chunk (delay, bytes as
    latin-1 text), enough to send the same bytes again."""
    with open(path, "w", encoding="utf-8") as f:
        for c in cases:
            chunks = [[d, b.decode("latin-1")] for d, b in c.chunks]
            f.write(json.dumps({"kind": c.kind, "name": c.name, "chunks": chunks}) + "\n")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_url")
    p.add_argument("admin_token")
    p.add_argument("--seconds", type=float, default=20.0, help="time budget for submitting cases (default 20)")
    p.add_argument("--seed", type=int, default=1, help="seed of the case generator (default 1)")
    p.add_argument("--max-cases", type=int, default=4000, help="most cases run (default 4000)")
    p.add_argument("--mutations", type=int, default=2500, help="random mutation cases generated (default 2500)")
    p.add_argument("--workers", type=int, default=32, help="connections at once (default 32)")
    p.add_argument("--verbose", action="store_true", help="print every case's answers")
    p.add_argument("--dump", metavar="FILE", help="write the full bytes of every failing case to FILE (JSON lines)")
    p.add_argument("--header-timeout-ms", type=int, default=5000, help="the daemon's header_timeout_ms (default 5000)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    url = urllib.parse.urlsplit(args.base_url)
    if url.scheme != "http" or not url.hostname:
        print(f"fuzz-http: BASE_URL must be http://host:port, got {args.base_url!r}", file=sys.stderr)
        return 2
    addr = (url.hostname, url.port or 80)
    host = url.netloc
    sale = f"fz-{args.seed}-{os.getpid()}-{int(time.time()) % 100000}"
    try:
        health = call(addr, host, "GET", "/healthz")
        if health.status != 200:
            raise RuntimeError(f"/healthz answered {health.status}")
        create_sale(addr, host, args.admin_token, sale)
        before = snapshot(addr, host, args.admin_token, sale)
        need_tokens = tokens_required(addr, host, sale)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        print(f"fuzz-http: setup failed: {e}", file=sys.stderr)
        return 2
    print(
        f"fuzz-http: {args.base_url}, sale {sale}, stock {before['stock']}, tokens required: {need_tokens}, seed {args.seed}"
    )
    target = Target(sale, FUZZ_ITEM, args.admin_token, host, args.header_timeout_ms / 1000, need_tokens)
    cases = CaseBuilder(target, random.Random(args.seed)).build(args.mutations)[: args.max_cases]
    tally = Tally()
    default_deadline = target.header_timeout_s + MARGIN_S
    start = time.monotonic()
    run_all(addr, cases, args, default_deadline, tally, start)
    elapsed = time.monotonic() - start
    after = None
    try:
        health = call(addr, host, "GET", "/healthz")
        if health.status != 200:
            tally.failures.append(f"/healthz answered {health.status} after the run")
        after = snapshot(addr, host, args.admin_token, sale)
        if after["stock"] != before["stock"]:
            tally.failures.append(f"the sale's stock changed: {before['stock']} -> {after['stock']}")
        if after["requests"] > before["requests"]:
            tally.failures.append(
                f"requests on the status board (seckill_requests): {before['requests']:.0f} -> {after['requests']:.0f}:"
                " a fuzz case reached the ring"
            )
        left = wait_connections_settle(addr, host, before["connections_open"], default_deadline)
        after["connections_open"] = left
        if left > before["connections_open"]:
            tally.failures.append(
                f"{left:.0f} connections still open {default_deadline:.0f} s after the run (before: {before['connections_open']:.0f})"
            )
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        tally.failures.append(f"the daemon does not answer after the run: {e}")
    print_summary(tally, elapsed, before, after)
    crashers = suspects(tally, SUSPECT_WINDOW_S)
    if crashers:
        print(f"the daemon stopped answering; {len(crashers)} case(s) started in the {SUSPECT_WINDOW_S:.0f} s before:")
        for c in crashers[-30:]:
            print(f"  ? [{c.kind}] {c.name}: {show(b''.join(d for _, d in c.chunks))}")
    if args.dump and (tally.failed_cases or crashers):
        dump_cases(args.dump, crashers + tally.failed_cases)
        print(f"the failing cases' bytes are in {args.dump}")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
