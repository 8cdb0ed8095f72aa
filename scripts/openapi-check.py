#!/usr/bin/env python3
"""Checks seckilld's OpenAPI document against the running daemon.

Usage:
    openapi-check.py BASE_URL ADMIN_TOKEN

1. Fetches ``BASE_URL/api/v1/openapi.json`` and validates it with
   ``openapi-spec-validator`` (every error is printed).
2. Checks that every security scheme an operation (or the document) names
   is declared in ``components.securitySchemes``, and that every admin
   operation names one.
3. Generates a Python client from the document with
   ``openapi-python-client`` (offline, into a temporary directory), imports
   it, and with the generated functions only:
   * reads the server clock;
   * checks that creating a sale *without* credentials is refused (401);
   * creates a sale as admin (the bearer token goes through the generated
     ``AuthenticatedClient``, set up from the document's security scheme);
   * reads the sale back as admin;
   * fetches a purchase token, when the document has the token operation
     and the daemon hands tokens out;
   * waits for the sale to start and buys one unit: the answer must be
     ``success`` with an order id;
   * reads the request's status.

Exit 0 when everything passed, 1 on the first failure (with the reason).
Needs the packages of ``scripts/requirements-test.txt`` (run it with the
venv's python: ``target/pyenv/bin/python``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOC_PATH = "/api/v1/openapi.json"
PACKAGE = "seckill_generated_client"
# The daemon is local: no proxy from the environment.
NO_PROXY = {"trust_env": False}
FIELD_PREFIX = "field_"  # the generator's default prefix for unusable names


class CheckFailed(Exception):
    """A check failed; the message says which and why."""


def step(msg: str) -> None:
    print(f"openapi-check: {msg}", flush=True)


# --------------------------------------------------------------------------
# The document


def fetch_document(base_url: str) -> tuple[dict, bytes]:
    """The document, parsed, and its raw bytes."""
    url = base_url.rstrip("/") + DOC_PATH
    try:
        # No proxy from the environment: the daemon is local.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as r:
            raw = r.read()
            ctype = r.headers.get("content-type", "")
    except OSError as e:
        raise CheckFailed(f"cannot fetch {url}: {e}") from e
    if "json" not in ctype:
        raise CheckFailed(f"{url} is served as {ctype!r}, not JSON")
    try:
        return json.loads(raw), raw
    except ValueError as e:
        raise CheckFailed(f"{url} is not JSON: {e}") from e


def validate_document(doc: dict) -> str:
    """Validates with openapi-spec-validator; returns the version found."""
    from jsonschema_path import SchemaPath
    from openapi_spec_validator.shortcuts import get_validator_cls
    from openapi_spec_validator.validation.exceptions import ValidatorDetectError

    try:
        cls = get_validator_cls(doc)
    except ValidatorDetectError as e:
        raise CheckFailed(f"not an OpenAPI document (no openapi/swagger version field): {e}") from e
    errors = list(cls(SchemaPath.from_dict(doc)).iter_errors())
    if errors:
        lines = [f"  - at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise CheckFailed(f"the document is not valid {cls.__name__}: {len(errors)} error(s)\n" + "\n".join(lines))
    return doc.get("openapi") or doc.get("swagger")


def operations(doc: dict):
    """Yields (method, path, operation) for every operation."""
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                yield method, path, op


def check_security(doc: dict) -> dict:
    """Every named security scheme is declared; admin operations name one.
    Returns the declared schemes."""
    declared = doc.get("components", {}).get("securitySchemes", {}) or {}
    problems = []
    for req in doc.get("security", []) or []:
        for name in req:
            if name not in declared:
                problems.append(f"the document's security names {name!r}, not in components.securitySchemes")
    for method, path, op in operations(doc):
        reqs = op.get("security", doc.get("security")) or []
        for req in reqs:
            for name in req:
                if name not in declared:
                    problems.append(
                        f"{method.upper()} {path} names security scheme {name!r}, not in components.securitySchemes {sorted(declared)}"
                    )
        if path.startswith("/admin/") and not any(reqs):
            problems.append(f"{method.upper()} {path} is an admin operation but names no security scheme")
    if problems:
        raise CheckFailed("security schemes:\n" + "\n".join(f"  - {p}" for p in problems))
    return declared


def find_operation(doc: dict, method: str, pattern: str):
    """The (path, operation) whose path matches ``pattern`` (a regex over
    the templated path), or None."""
    for m, path, op in operations(doc):
        if m == method and re.fullmatch(pattern, path):
            return path, op
    return None


# --------------------------------------------------------------------------
# The generated client


def generate_client(doc_raw: bytes, workdir: Path) -> Path:
    """Runs openapi-python-client on the document; returns the directory
    to put on sys.path. Prints the generator's warnings."""
    doc_file = workdir / "openapi.json"
    doc_file.write_bytes(doc_raw)
    out = workdir / PACKAGE
    env = dict(os.environ)
    # The generator runs ruff (a dependency in the same venv) on its output.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(doc_file),
        "--output-path",
        str(out),
        "--meta",
        "none",
        "--overwrite",
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or not (out / "__init__.py").exists():
        raise CheckFailed(f"openapi-python-client failed (exit {proc.returncode}):\n{text}")
    if "warning" in text.lower():
        step("generator warnings:\n" + text)
    return workdir


def import_client(root: Path):
    sys.path.insert(0, str(root))
    return importlib.import_module(PACKAGE)


def endpoint_module(pkg, doc: dict, method: str, path: str, op: dict):
    """The generated module of an operation, named the way the generator
    names it: ``api/<first tag>/<operationId>``."""
    from openapi_python_client.strings import PythonIdentifier

    tag = PythonIdentifier((op.get("tags") or ["default"])[0], prefix="tag")
    if not op.get("operationId"):
        raise CheckFailed(f"{method.upper()} {path} has no operationId")
    name = PythonIdentifier(op["operationId"], prefix=FIELD_PREFIX)
    modname = f"{pkg.__name__}.api.{tag}.{name}"
    try:
        return importlib.import_module(modname)
    except ImportError as e:
        raise CheckFailed(f"the generated client has no module for {method.upper()} {path} ({modname}): {e}") from e


def body_model(pkg, doc: dict, op: dict):
    """The generated model class of an operation's JSON request body."""
    from openapi_python_client.strings import ClassName

    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if not ref.startswith("#/components/schemas/"):
        raise CheckFailed(f"request body of {op.get('operationId')} is not a named schema: {schema}")
    cls_name = ClassName(ref.rsplit("/", 1)[1], prefix=FIELD_PREFIX)
    models = importlib.import_module(f"{pkg.__name__}.models")
    try:
        return getattr(models, cls_name)
    except AttributeError as e:
        raise CheckFailed(f"the generated client has no model {cls_name} for {ref}") from e


def path_kwargs(op: dict, values: dict[str, str]) -> dict[str, str]:
    """Keyword arguments for an operation's path parameters, in the
    generator's snake_case names; ``values`` is keyed by a part of the
    parameter name (``sale``, ``item``)."""
    from openapi_python_client.strings import PythonIdentifier

    out = {}
    for p in op.get("parameters", []):
        if p.get("in") != "path":
            continue
        key = next((k for k in values if k in p["name"]), None)
        if key is None:
            raise CheckFailed(f"no value for path parameter {p['name']} of {op.get('operationId')}")
        out[str(PythonIdentifier(p["name"], prefix=FIELD_PREFIX))] = values[key]
    return out


def make_auth_client(pkg, base_url: str, token: str, scheme: dict):
    """An AuthenticatedClient set up from the document's security scheme."""
    kind = scheme.get("type")
    if kind == "http" and scheme.get("scheme", "").lower() == "bearer":
        return pkg.AuthenticatedClient(
            base_url=base_url,
            token=token,
            prefix="Bearer",
            auth_header_name="Authorization",
            raise_on_unexpected_status=False,
            httpx_args=NO_PROXY,
        )
    if kind == "apiKey" and scheme.get("in") == "header":
        return pkg.AuthenticatedClient(
            base_url=base_url,
            token=token,
            prefix="",
            auth_header_name=scheme["name"],
            raise_on_unexpected_status=False,
            httpx_args=NO_PROXY,
        )
    raise CheckFailed(
        f"security scheme {scheme} is not one a generated client can send (http bearer or an apiKey header)"
    )


def body_json(resp) -> dict:
    try:
        return json.loads(resp.content)
    except ValueError:
        return {}


def expect(resp, status: int, what: str) -> None:
    if int(resp.status_code) != status:
        raise CheckFailed(f"{what}: expected {status}, got {int(resp.status_code)} {resp.content[:300]!r}")


# --------------------------------------------------------------------------
# The flow


def run_flow(pkg, doc: dict, base_url: str, admin_token: str, schemes: dict) -> None:
    """Clock, sale (refused without auth, created with it), token,
    purchase, request status: each through the generated client."""
    ops = {
        "time": find_operation(doc, "get", r"/api/v1/time"),
        "put_sale": find_operation(doc, "put", r"/admin/v1/sales/\{[^}]+\}"),
        "get_sale": find_operation(doc, "get", r"/admin/v1/sales/\{[^}]+\}"),
        "token": find_operation(doc, "post", r"/api/v1/sales/\{[^}]+\}/items/\{[^}]+\}/token"),
        "purchase": find_operation(doc, "post", r"/api/v1/sales/\{[^}]+\}/items/\{[^}]+\}/purchase"),
        "status": find_operation(doc, "get", r"/api/v1/requests/\{[^}]+\}"),
    }
    for name in ("time", "put_sale", "purchase"):
        if ops[name] is None:
            raise CheckFailed(f"the document has no {name} operation")
    mod = {
        k: endpoint_module(
            pkg,
            doc,
            {"time": "get", "put_sale": "put", "get_sale": "get", "token": "post", "purchase": "post", "status": "get"}[
                k
            ],
            *v,
        )
        for k, v in ops.items()
        if v
    }

    public = pkg.Client(base_url=base_url, raise_on_unexpected_status=False, httpx_args=NO_PROXY)
    put_op = ops["put_sale"][1]
    scheme_names = [n for req in put_op.get("security", []) for n in req]
    if not scheme_names:
        raise CheckFailed("PUT sale names no security scheme")
    admin = make_auth_client(pkg, base_url, admin_token, schemes[scheme_names[0]])

    r = mod["time"].sync_detailed(client=public)
    expect(r, 200, "GET /api/v1/time")
    now = r.parsed.now_ms if r.parsed is not None else body_json(r)["now_ms"]
    step(f"server clock {now}")

    sale, item, user = f"oa-{os.getpid()}-{now % 10**8}", "oa-item", f"oa-user-{now % 10**8}"
    start = now + 2000
    SaleBody = body_model(pkg, doc, put_op)
    sale_body = SaleBody.from_dict(
        {
            "start_ms": start,
            "end_ms": start + 600_000,
            "items": [
                {"item_id": item, "title": "OpenAPI check", "price_cents": 1999, "stock": 3, "per_user_limit": 1}
            ],
        }
    )
    sale_kw = path_kwargs(put_op, {"sale": sale})

    r = mod["put_sale"].sync_detailed(client=public, body=sale_body, **sale_kw)
    expect(r, 401, "PUT sale without credentials")
    step(f"PUT /admin/v1/sales/{sale} without credentials: 401 {body_json(r).get('error')}")
    r = mod["put_sale"].sync_detailed(client=admin, body=sale_body, **sale_kw)
    expect(r, 200, f"PUT sale as admin (scheme {scheme_names[0]!r})")
    step(f"created sale {sale} as admin through {scheme_names[0]!r}: {r.content.decode()}")

    if "get_sale" in mod:
        r = mod["get_sale"].sync_detailed(client=admin, **path_kwargs(ops["get_sale"][1], {"sale": sale}))
        expect(r, 200, "GET sale as admin")
        step(f"read it back: {r.content.decode()}")

    token = None
    if "token" in mod:
        tok_op = ops["token"][1]
        UserBody = body_model(pkg, doc, tok_op)
        r = mod["token"].sync_detailed(
            client=public,
            body=UserBody.from_dict({"user_id": user}),
            **path_kwargs(tok_op, {"sale": sale, "item": item}),
        )
        code = body_json(r).get("error")
        if int(r.status_code) == 200:
            token = r.parsed.token if r.parsed is not None and hasattr(r.parsed, "token") else body_json(r)["token"]
            step(f"purchase token for {user}: {token[:24]}…")
        elif code == "tokens_disabled":
            step("the daemon hands out no tokens (tokens_disabled): buying without one")
        else:
            raise CheckFailed(f"token: {int(r.status_code)} {r.content[:300]!r}")
    else:
        step("the document has no token operation: buying without a token")

    wait_for(mod["time"], public, start)
    pur_op = ops["purchase"][1]
    PurchaseBody = body_model(pkg, doc, pur_op)
    body = {"user_id": user, "request_id": f"{user}-1"}
    if token:
        body["token"] = token
    r = mod["purchase"].sync_detailed(
        client=public, body=PurchaseBody.from_dict(body), **path_kwargs(pur_op, {"sale": sale, "item": item})
    )
    answer = body_json(r)
    parsed = r.parsed
    status = getattr(parsed, "status", None) or answer.get("status")
    order_id = getattr(parsed, "order_id", None) or answer.get("order_id")
    if (
        int(r.status_code) != 200
        or status != "success"
        or not isinstance(order_id, str)
        or not re.fullmatch(r"[0-9a-f]{16}", order_id)
    ):
        raise CheckFailed(
            f"purchase: expected 200 success with an order id, got {int(r.status_code)} {r.content[:300]!r}"
        )
    step(f"purchase: 200 {status}, order {order_id} (parsed as {type(parsed).__name__})")

    if "status" in mod:
        st_op = ops["status"][1]
        r = mod["status"].sync_detailed(client=public, **path_kwargs(st_op, {"request": f"{user}-1"}))
        expect(r, 200, "GET request status")
        step(f"request status: {r.content.decode()}")


def wait_for(time_mod, client, start_ms: int) -> None:
    """Waits until the server clock reaches ``start_ms``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = time_mod.sync_detailed(client=client)
        now = r.parsed.now_ms if r.parsed is not None else body_json(r)["now_ms"]
        if now >= start_ms + 50:
            return
        time.sleep(min(0.5, (start_ms + 50 - now) / 1000))
    raise CheckFailed("the sale did not start within 30 s of the server clock")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, admin_token = argv[0].rstrip("/"), argv[1]
    try:
        doc, raw = fetch_document(base_url)
        version = validate_document(doc)
        step(f"{base_url}{DOC_PATH}: valid OpenAPI {version}, {sum(1 for _ in operations(doc))} operations")
        schemes = check_security(doc)
        step(f"security schemes declared and named consistently: {sorted(schemes)}")
        with tempfile.TemporaryDirectory(prefix="openapi-check-") as tmp:
            root = generate_client(raw, Path(tmp))
            pkg = import_client(root)
            step(f"generated a client from the document ({PACKAGE})")
            run_flow(pkg, doc, base_url, admin_token, schemes)
    except CheckFailed as e:
        print(f"openapi-check: FAILED: {e}", file=sys.stderr)
        return 1
    step("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
