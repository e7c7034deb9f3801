#!/usr/bin/env python3
"""A fault-injection HTTPS proxy for the Kubernetes API, for integration tests.

It sits on loopback between a Kubernetes API client (the code under test, kubectl, ...)
and a real kube-apiserver, and injects faults *between* them: every request that no rule
catches goes to the real server and its answer comes back unchanged, so the code under
test always talks to the real API; the proxy only adds failures on top.

    fault_proxy.py --listen 127.0.0.1:0 --control 127.0.0.1:0 \\
        --upstream https://127.0.0.1:6443 --upstream-ca ca.crt \\
        --client-cert admin.crt --client-key admin.key \\
        --serve-cert apiserver.crt --serve-key apiserver.key [--ready-file PATH] [--verbose]

Client side (--listen): TLS with --serve-cert/--serve-key (pass the API server's own
serving certificate, so clients verify the proxy with the cluster CA as usual); client
certificates are not requested. HTTP/1.1 with keep-alive (ALPN offers only http/1.1, so Go
clients fall back from HTTP/2). Request bodies may come with Content-Length or chunked.

Upstream (--upstream): one new TLS connection per request, authenticated with
--client-cert/--client-key. IDENTITY: the client's identity is *replaced* by the proxy's:
the client presents no certificate to the proxy, and an `Authorization` header from the
client is dropped, so the API server sees every request as the --client-cert user. The
`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-*`
headers are forwarded untouched, so with a privileged proxy identity (e.g. system:masters)
`kubectl --as=...` acts as the impersonated user through the proxy. Responses come back
as they arrive: a body with a Content-Length keeps it; a body without one (watches,
`?watch=true`/`watch=1`) is forwarded incrementally, re-chunked to the client. Connection
upgrades (exec, attach, port-forward) are tunnelled as raw bytes.

When listening, the proxy prints {"listen": "127.0.0.1:PORT", "control": "127.0.0.1:PORT"}
on stdout and writes the same JSON to --ready-file (atomically), so tests can use port 0.
It exits with status 0 on SIGTERM/SIGINT, closing every connection.

Control API (plain HTTP on --control, JSON bodies and answers):

  POST /faults     a list of rules (or one rule, or {"rules": [...]}), appended in order:
                   {"match": {"method": "GET", "path": "<regex, re.search on path+query>",
                              "watch": true|false},      (every key optional)
                    "count": N,                          (default 1; -1 = forever)
                    "action": ACTION}
                   -> 200 {"added": n, "ids": [...], "active": n}; 400 {"error": "..."}
      ACTION is one of
        {"type": "status", "code": 429, "retry_after": 5, "reason": "TooManyRequests",
         "message": "..."}
            answer at once (no upstream request) with a Kubernetes Status body
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": ..., "reason": ..., "code": ...} (+ "details": {"retryAfterSeconds"})
            and a Retry-After header when retry_after is given. reason defaults from the
            code (410 Expired, 429 TooManyRequests, 500 InternalError, 503
            ServiceUnavailable, 504 Timeout, ...). The connection stays usable.
        {"type": "watch_error", "code": 410, "reason": "Expired", "message": "..."}
            answer 200 and stream one line {"type": "ERROR", "object": <Status 410
            Expired>} then end the stream properly (code/reason/message optional).
        {"type": "drop"}
            close the client connection without answering.
        {"type": "stall", "seconds": S}
            forward the request; after the response headers (for watches: after the first
            event line) send nothing for S seconds while keeping the connection open, then
            close the connection.
        {"type": "cut", "after_lines": K, "partial_bytes": B}
            forward K complete lines of the body, then B bytes of the next line (at most
            its length minus one, so the line is always left incomplete), then close the
            connection abruptly (no chunked terminator, no TLS close_notify).
  GET /faults      {"rules": [{"id", "match", "count" (left), "applied", "action"}, ...]}
  DELETE /faults   clear every rule -> {"cleared": n}
  POST /drop-all   close every open client connection now (and its upstream connection;
                   in-flight watches end abruptly) -> {"dropped": n}
  GET /stats       {"requests": n, "by_method": {"GET": n, ...}, "watches": n,
                    "faults_applied": {"status": n, "watch_error": n, "drop": n,
                                       "stall": n, "cut": n},
                    "open_connections": n, "connections": n (accepted in all),
                    "upstream_errors": n, "drop_all": n}
  DELETE /stats    reset the counters (open_connections stays) -> the stats before
  GET /healthz     {"ok": true}

Rules are matched in order; the first matching rule with count left applies, and its count
goes down by one. `requests`/`by_method`/`watches` count every request received, faulted
or not. A request is a watch when its query has watch=true or watch=1 (or its path has a
/watch/ segment). An upstream failure before the response headers becomes a 502 Status;
one during a body closes the client connection abruptly. While a watch is streaming, data
or EOF from the client ends it (clients do not pipeline), so a client going away frees the
upstream watch at once.
"""
import argparse
import http.client
import http.server
import json
import os
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding",
              "upgrade"}
# Not forwarded upstream: Host is the upstream's, Authorization would override the
# proxy's identity, Content-Length is recomputed, Expect is answered by the proxy.
DROPPED_REQUEST_HEADERS = {"host", "authorization", "content-length", "expect"}

DEFAULT_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
    413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 502: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}
ACTION_TYPES = ("status", "watch_error", "drop", "stall", "cut")
ACTION_KEYS = {
    "status": {"code", "retry_after", "reason", "message"},
    "watch_error": {"code", "reason", "message"},
    "drop": set(),
    "stall": {"seconds"},
    "cut": {"after_lines", "partial_bytes"},
}

MAX_LINE = 65536
CONNECT_TIMEOUT = 10
HANDSHAKE_TIMEOUT = 15

VERBOSE = False


def log(msg):
    sys.stderr.write(f"fault-proxy: {msg}\n")
    sys.stderr.flush()


def debug(msg):
    if VERBOSE:
        log(msg)


def status_object(code, reason=None, message=None, retry_after=None):
    reason = reason or DEFAULT_REASONS.get(code, "")
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message or f"injected by fault proxy: {code} {reason}".strip(),
           "reason": reason, "code": code}
    if retry_after is not None:
        obj["details"] = {"retryAfterSeconds": int(retry_after)}
    return obj


def is_watch(target):
    parsed = urllib.parse.urlsplit(target)
    for value in urllib.parse.parse_qs(parsed.query).get("watch", []):
        if value.lower() in ("true", "1"):
            return True
    return "/watch/" in parsed.path + "/"


def raw_shutdown(sock):
    """Shuts a (TLS) socket down at the TCP level from any thread: a blocked reader wakes
    up with EOF, the peer sees the connection end without a TLS close_notify."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class BadRequest(Exception):
    pass


# ---- rules ------------------------------------------------------------------------------

class Rule:
    def __init__(self, rid, spec):
        if not isinstance(spec, dict):
            raise ValueError("a rule must be an object")
        unknown = set(spec) - {"match", "count", "action"}
        if unknown:
            raise ValueError(f"unknown rule keys {sorted(unknown)}")
        match = spec.get("match") or {}
        if not isinstance(match, dict):
            raise ValueError("match must be an object")
        unknown = set(match) - {"method", "path", "watch"}
        if unknown:
            raise ValueError(f"unknown match keys {sorted(unknown)}")
        self.method = match.get("method")
        if self.method is not None and not isinstance(self.method, str):
            raise ValueError("match.method must be a string")
        path = match.get("path")
        if path is not None and not isinstance(path, str):
            raise ValueError("match.path must be a string")
        try:
            self.path = re.compile(path) if path is not None else None
        except re.error as e:
            raise ValueError(f"match.path: {e}") from None
        self.watch = match.get("watch")
        if self.watch is not None and not isinstance(self.watch, bool):
            raise ValueError("match.watch must be true or false")
        self.count = spec.get("count", 1)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < -1:
            raise ValueError("count must be an integer >= -1")
        action = spec.get("action")
        if not isinstance(action, dict) or action.get("type") not in ACTION_TYPES:
            raise ValueError(f"action.type must be one of {list(ACTION_TYPES)}")
        atype = action["type"]
        unknown = set(action) - {"type"} - ACTION_KEYS[atype]
        if unknown:
            raise ValueError(f"unknown keys for a {atype} action: {sorted(unknown)}")

        def number(key, default=None, integer=False):
            v = action.get(key, default)
            if v is None:
                raise ValueError(f"{atype} action needs {key}")
            if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) \
                    or v < 0:
                raise ValueError(f"action.{key} must be a non-negative number")
            return v

        if atype == "status":
            code = number("code", integer=True)
            if not 200 <= code <= 599:
                raise ValueError("action.code must be an HTTP status 200..599")
            if "retry_after" in action:
                number("retry_after")
        elif atype == "watch_error":
            number("code", 410, integer=True)
        elif atype == "stall":
            number("seconds")
        elif atype == "cut":
            number("after_lines", 0, integer=True)
            number("partial_bytes", 0, integer=True)
        for key in ("reason", "message"):
            if key in action and not isinstance(action[key], str):
                raise ValueError(f"action.{key} must be a string")
        self.id = rid
        self.spec_match = match
        self.action = dict(action)
        self.applied = 0

    def matches(self, method, target, watch):
        if self.count == 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.watch is not None and self.watch != watch:
            return False
        if self.path is not None and not self.path.search(target):
            return False
        return True

    def describe(self):
        return {"id": self.id, "match": self.spec_match, "count": self.count,
                "applied": self.applied, "action": self.action}


class Rules:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1

    def add(self, specs):
        with self.lock:
            new = []
            for i, spec in enumerate(specs):
                try:
                    new.append(Rule(self.next_id + i, spec))
                except ValueError as e:
                    raise ValueError(f"rule {i}: {e}") from None
            self.next_id += len(new)
            self.rules.extend(new)
            return [r.id for r in new], sum(1 for r in self.rules if r.count != 0)

    def clear(self):
        with self.lock:
            n = len(self.rules)
            self.rules = []
            return n

    def take(self, method, target, watch):
        """The action of the first matching rule with count left (its count goes down)."""
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, target, watch):
                    if rule.count > 0:
                        rule.count -= 1
                    rule.applied += 1
                    return rule.id, dict(rule.action)
        return None, None

    def describe(self):
        with self.lock:
            return [r.describe() for r in self.rules]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.requests = 0
        self.by_method = {}
        self.watches = 0
        self.faults = {t: 0 for t in ACTION_TYPES}
        self.connections = 0
        self.upstream_errors = 0
        self.drop_all = 0

    def request(self, method, watch):
        with self.lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            if watch:
                self.watches += 1

    def bump(self, name, key=None):
        with self.lock:
            if key is None:
                setattr(self, name, getattr(self, name) + 1)
            else:
                d = getattr(self, name)
                d[key] = d.get(key, 0) + 1

    def snapshot(self, open_connections):
        with self.lock:
            return {"requests": self.requests, "by_method": dict(self.by_method),
                    "watches": self.watches, "faults_applied": dict(self.faults),
                    "open_connections": open_connections, "connections": self.connections,
                    "upstream_errors": self.upstream_errors, "drop_all": self.drop_all}


# ---- client connections -----------------------------------------------------------------

class ClientConn:
    """One client connection: its socket and the upstream sockets of its request in flight,
    so that /drop-all (or a vanished client) can end everything from another thread."""

    def __init__(self, cid, sock, peer):
        self.id = cid
        self.sock = sock
        self.peer = peer
        self.lock = threading.Lock()
        self.upstreams = set()
        self.aborted = threading.Event()

    def add_upstream(self, sock):
        with self.lock:
            self.upstreams.add(sock)
        if self.aborted.is_set():
            raw_shutdown(sock)

    def remove_upstream(self, sock):
        with self.lock:
            self.upstreams.discard(sock)

    def abort(self):
        """Ends the connection abruptly: TCP shutdown of the client and upstream sockets."""
        self.aborted.set()
        raw_shutdown(self.sock)
        with self.lock:
            ups = list(self.upstreams)
        for s in ups:
            raw_shutdown(s)

    def send(self, data):
        self.sock.sendall(data)

    def send_chunk(self, data):
        if data:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))


class Request:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        conn_tokens = {t.strip().lower() for v in headers.get_all("Connection", [])
                       for t in v.split(",")}
        self.connection_tokens = conn_tokens
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in conn_tokens
        else:
            self.keep_alive = "keep-alive" in conn_tokens
        self.upgrade = "upgrade" in conn_tokens and headers.get("Upgrade") is not None
        self.watch = is_watch(target)


def read_exact(rfile, n):
    data = rfile.read(n)
    if len(data) != n:
        raise ConnectionError("client closed the connection inside a request body")
    return data


def read_chunked_body(rfile):
    parts = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionError("client closed the connection inside a chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            while True:  # trailers, up to the empty line
                t = rfile.readline(MAX_LINE + 1)
                if t in (b"\r\n", b"\n", b""):
                    return b"".join(parts)
        parts.append(read_exact(rfile, size))
        read_exact(rfile, 2)


def read_request(conn, rfile):
    """Reads one request; None when the client closed the connection between requests."""
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise BadRequest("request line too long")
        if line not in (b"\r\n", b"\n"):
            break
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {line[:100]!r}")
    method, target, version = parts
    try:
        headers = http.client.parse_headers(rfile)
    except http.client.HTTPException as e:
        raise BadRequest(f"bad headers: {e}") from None
    if headers.get("Expect", "").lower() == "100-continue":
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    te = headers.get("Transfer-Encoding")
    if te is not None:
        if "chunked" not in te.lower():
            raise BadRequest(f"unsupported Transfer-Encoding {te}")
        body = read_chunked_body(rfile)
    elif headers.get("Content-Length") is not None:
        try:
            n = int(headers["Content-Length"])
            if n < 0:
                raise ValueError
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        body = read_exact(rfile, n)
    else:
        body = b""
    return Request(method, target, version, headers, body)


# ---- the proxy --------------------------------------------------------------------------

class Proxy:
    def __init__(self, args):
        up = urllib.parse.urlsplit(args.upstream)
        if up.scheme != "https" or not up.hostname:
            raise SystemExit("--upstream must be https://HOST:PORT")
        self.up_host = up.hostname
        self.up_port = up.port or 443
        self.up_prefix = up.path.rstrip("/")
        self.up_hostport = up.netloc
        self.up_ctx = ssl.create_default_context(cafile=args.upstream_ca)
        self.up_ctx.load_cert_chain(args.client_cert, args.client_key)
        self.up_ctx.set_alpn_protocols(["http/1.1"])
        self.serve_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.serve_ctx.load_cert_chain(args.serve_cert, args.serve_key)
        self.serve_ctx.set_alpn_protocols(["http/1.1"])
        self.rules = Rules()
        self.stats = Stats()
        self.lock = threading.Lock()
        self.conns = {}
        self.next_conn = 1
        self.stopping = threading.Event()
        host, port = split_hostport(args.listen)
        self.listener = socket.create_server((host, port), backlog=128)
        self.listen_addr = "%s:%d" % self.listener.getsockname()[:2]

    # -- connections --

    def serve(self):
        while not self.stopping.is_set():
            try:
                r, _, _ = select.select([self.listener], [], [], 0.5)
                if not r:
                    continue
                raw, peer = self.listener.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            with self.lock:
                cid = self.next_conn
                self.next_conn += 1
                conn = ClientConn(cid, raw, peer)
                self.conns[cid] = conn
            self.stats.bump("connections")
            threading.Thread(target=self.handle_client, args=(conn,), daemon=True,
                             name=f"client-{cid}").start()

    def open_connections(self):
        with self.lock:
            return len(self.conns)

    def drop_all(self):
        with self.lock:
            conns = list(self.conns.values())
        for c in conns:
            c.abort()
        self.stats.bump("drop_all")
        if conns:
            log(f"drop-all: closed {len(conns)} client connection(s)")
        return len(conns)

    def handle_client(self, conn):
        raw = conn.sock
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            sock = self.serve_ctx.wrap_socket(raw, server_side=True)
            sock.settimeout(None)
            conn.sock = sock
            if conn.aborted.is_set():
                return
            rfile = sock.makefile("rb", buffering=65536)
            while not conn.aborted.is_set():
                try:
                    req = read_request(conn, rfile)
                except BadRequest as e:
                    debug(f"conn {conn.id}: bad request: {e}")
                    self.send_status(conn, 400, "BadRequest", f"fault proxy: {e}", None,
                                     keep_alive=False)
                    break
                if req is None:
                    break
                if not self.handle_request(conn, rfile, req):
                    break
        except (OSError, ssl.SSLError, ValueError, http.client.HTTPException) as e:
            debug(f"conn {conn.id}: {type(e).__name__}: {e}")
        except Exception:  # never let one connection take the proxy down
            log(f"conn {conn.id}: unexpected error:\n{traceback.format_exc()}")
        finally:
            with self.lock:
                self.conns.pop(conn.id, None)
            try:
                conn.sock.close()
            except OSError:
                pass

    # -- requests --

    def handle_request(self, conn, rfile, req):
        """Serves one request; False when the client connection must end."""
        self.stats.request(req.method, req.watch)
        rid, action = self.rules.take(req.method, req.target, req.watch)
        debug(f"conn {conn.id}: {req.method} {req.target}"
              + (f" -> rule {rid} {action['type']}" if action else ""))
        atype = action["type"] if action else None
        if atype:
            self.stats.bump("faults", atype)
            log(f"rule {rid}: {atype} on {req.method} {req.target}")
        if atype == "drop":
            conn.abort()
            return False
        if atype == "status":
            code = action["code"]
            self.send_status(conn, code, action.get("reason"), action.get("message"),
                             action.get("retry_after"), req.keep_alive)
            return req.keep_alive
        if atype == "watch_error":
            return self.send_watch_error(conn, req, action)
        if req.upgrade:
            return self.tunnel(conn, rfile, req)
        return self.forward(conn, req, action)

    def send_status(self, conn, code, reason, message, retry_after, keep_alive):
        body = json.dumps(status_object(code, reason, message, retry_after)).encode()
        head = [f"HTTP/1.1 {code} {http.client.responses.get(code, 'Unknown')}",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
                "Cache-Control: no-cache, private"]
        if retry_after is not None:
            head.append(f"Retry-After: {int(retry_after)}")
        head.append("Connection: " + ("keep-alive" if keep_alive else "close"))
        conn.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def send_watch_error(self, conn, req, action):
        code = action.get("code", 410)
        reason = action.get("reason") or DEFAULT_REASONS.get(code, "Expired")
        message = action.get("message") or \
            "too old resource version (injected by fault proxy)"
        event = json.dumps({"type": "ERROR",
                            "object": status_object(code, reason, message)}).encode() + b"\n"
        if req.version == "HTTP/1.1":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n"
                      + (b"Connection: keep-alive" if req.keep_alive else b"Connection: close")
                      + b"\r\n\r\n")
            conn.send_chunk(event)
            conn.send(b"0\r\n\r\n")
            return req.keep_alive
        conn.send(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\n\r\n" + event)
        return False

    def upstream_headers(self, req, keep_upgrade=False):
        conn_listed = req.connection_tokens
        out = []
        for k, v in req.headers.items():
            lk = k.lower()
            if lk in DROPPED_REQUEST_HEADERS:
                continue
            if lk in HOP_BY_HOP or lk in conn_listed:
                if not (keep_upgrade and lk in ("connection", "upgrade")):
                    continue
            out.append((k, v))
        out.insert(0, ("Host", self.up_hostport))
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            out.append(("Content-Length", str(len(req.body))))
        return out

    def forward(self, conn, req, action):
        up = http.client.HTTPSConnection(self.up_host, self.up_port, context=self.up_ctx,
                                         timeout=CONNECT_TIMEOUT)
        up_sock = None
        try:
            try:
                up.connect()
                up_sock = up.sock
                up_sock.settimeout(None)
                conn.add_upstream(up_sock)
                up.putrequest(req.method, self.up_prefix + req.target, skip_host=True,
                              skip_accept_encoding=True)
                for k, v in self.upstream_headers(req):
                    up.putheader(k, v)
                up.endheaders(req.body or None)
                resp = up.getresponse()
            except (OSError, http.client.HTTPException) as e:
                if conn.aborted.is_set():
                    return False
                self.stats.bump("upstream_errors")
                log(f"upstream error on {req.method} {req.target}: {type(e).__name__}: {e}")
                self.send_status(conn, 502, "InternalError",
                                 f"fault proxy: upstream error: {type(e).__name__}: {e}",
                                 None, req.keep_alive)
                return req.keep_alive
            return self.relay(conn, req, resp, action)
        finally:
            if up_sock is not None:
                conn.remove_upstream(up_sock)
            up.close()

    def relay(self, conn, req, resp, action):
        keep_alive = req.keep_alive
        no_body = (req.method == "HEAD" or resp.status in (204, 304)
                   or 100 <= resp.status < 200)
        head = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        listed = {t.strip().lower() for v in resp.msg.get_all("Connection", [])
                  for t in v.split(",")}
        for k, v in resp.msg.items():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in listed or (lk == "content-length" and not no_body):
                continue
            head.append(f"{k}: {v}")
        if no_body:
            framing = "none"
        elif resp.length is not None and not resp.chunked:
            framing = "length"
            head.append(f"Content-Length: {resp.length}")
        elif req.version == "HTTP/1.1":
            framing = "chunked"
            head.append("Transfer-Encoding: chunked")
        else:
            framing = "close"
            keep_alive = False
        head.append("Connection: " + ("keep-alive" if keep_alive else "close"))
        conn.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

        def send(data):
            if framing == "chunked":
                conn.send_chunk(data)
            elif data:
                conn.send(data)

        atype = action["type"] if action else None
        if framing == "none":
            if atype == "stall":
                conn.aborted.wait(action["seconds"])
                conn.abort()
                return False
            return keep_alive

        try:
            if atype == "stall":
                if req.watch:
                    send(resp.readline())
                conn.aborted.wait(action["seconds"])
                conn.abort()
                return False
            if atype == "cut":
                for _ in range(action["after_lines"]):
                    line = resp.readline()
                    if not line:
                        break
                    send(line)
                else:
                    line = resp.readline()
                    if line:
                        send(line[:min(action["partial_bytes"], len(line) - 1)])
                conn.abort()
                return False
            monitor = None
            if req.watch:
                monitor = threading.Thread(target=self.watch_client, args=(conn, resp),
                                           daemon=True, name=f"monitor-{conn.id}")
                monitor.start()
            try:
                while True:
                    data = resp.read1(65536)
                    if not data:
                        break
                    send(data)
            finally:
                resp.done = True
        except (OSError, http.client.HTTPException) as e:
            # Upstream or client gone in the middle of a body: nothing sensible can be
            # said to the client any more, so the connection ends abruptly.
            debug(f"conn {conn.id}: body of {req.method} {req.target} cut short: "
                  f"{type(e).__name__}: {e}")
            conn.abort()
            return False
        if conn.aborted.is_set():
            return False
        if framing == "chunked":
            conn.send(b"0\r\n\r\n")
        return keep_alive

    def watch_client(self, conn, resp):
        """While a watch streams, a readable client socket means EOF (or a pipelined
        request, which clients do not send): end the watch so the upstream one goes too."""
        sock = conn.sock
        while not getattr(resp, "done", False) and not conn.aborted.is_set():
            try:
                r, _, _ = select.select([sock], [], [], 0.5)
            except (OSError, ValueError):
                return
            if r and not getattr(resp, "done", False):
                debug(f"conn {conn.id}: client went away during a watch")
                conn.abort()
                return

    def tunnel(self, conn, rfile, req):
        """A connection upgrade (exec, attach, port-forward): raw bytes both ways."""
        try:
            raw = socket.create_connection((self.up_host, self.up_port), CONNECT_TIMEOUT)
            up = self.up_ctx.wrap_socket(raw, server_hostname=self.up_host)
            up.settimeout(None)
        except OSError as e:
            self.stats.bump("upstream_errors")
            log(f"upstream error on {req.method} {req.target}: {e}")
            self.send_status(conn, 502, "InternalError", f"fault proxy: upstream error: {e}",
                             None, False)
            return False
        conn.add_upstream(up)
        try:
            lines = [f"{req.method} {self.up_prefix + req.target} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in self.upstream_headers(req, keep_upgrade=True)]
            up.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body)

            def client_to_upstream():
                try:
                    while True:
                        data = rfile.read1(65536)
                        if not data:
                            break
                        up.sendall(data)
                except (OSError, ValueError):
                    pass
                conn.abort()

            threading.Thread(target=client_to_upstream, daemon=True,
                             name=f"tunnel-{conn.id}").start()
            while True:
                data = up.recv(65536)
                if not data:
                    break
                conn.send(data)
        except (OSError, ValueError):
            pass
        finally:
            conn.abort()
            conn.remove_upstream(up)
            up.close()
        return False


# ---- control API ------------------------------------------------------------------------

def control_handler(proxy):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fault-proxy-control"

        def log_message(self, fmt, *args):
            debug("control: " + fmt % args)

        def reply(self, code, obj):
            body = json.dumps(obj).encode() + b"\n"
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw) if raw.strip() else None

        def route(self):
            return urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"

        def do_GET(self):
            path = self.route()
            if path == "/stats":
                self.reply(200, proxy.stats.snapshot(proxy.open_connections()))
            elif path == "/faults":
                self.reply(200, {"rules": proxy.rules.describe()})
            elif path == "/healthz":
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {"error": f"no such endpoint GET {path}"})

        def do_POST(self):
            path = self.route()
            try:
                data = self.body()
            except (ValueError, UnicodeDecodeError) as e:
                self.reply(400, {"error": f"bad JSON: {e}"})
                return
            if path == "/faults":
                if isinstance(data, dict) and "rules" in data:
                    data = data["rules"]
                if isinstance(data, dict):
                    data = [data]
                if not isinstance(data, list):
                    self.reply(400, {"error": "expected a list of rules"})
                    return
                try:
                    ids, active = proxy.rules.add(data)
                except ValueError as e:
                    self.reply(400, {"error": str(e)})
                    return
                log(f"rules added: {json.dumps(data)}")
                self.reply(200, {"added": len(ids), "ids": ids, "active": active})
            elif path == "/drop-all":
                self.reply(200, {"dropped": proxy.drop_all()})
            else:
                self.reply(404, {"error": f"no such endpoint POST {path}"})

        def do_DELETE(self):
            path = self.route()
            if path == "/faults":
                self.reply(200, {"cleared": proxy.rules.clear()})
            elif path == "/stats":
                before = proxy.stats.snapshot(proxy.open_connections())
                with proxy.stats.lock:
                    proxy.stats.reset()
                self.reply(200, before)
            else:
                self.reply(404, {"error": f"no such endpoint DELETE {path}"})

    return Handler


def split_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"bad address {s!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv=None):
    global VERBOSE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="HOST:PORT for API clients (TLS)")
    p.add_argument("--control", required=True, help="HOST:PORT for the control API (HTTP)")
    p.add_argument("--upstream", required=True, help="https://HOST:PORT of the API server")
    p.add_argument("--upstream-ca", required=True, help="CA bundle to verify the upstream")
    p.add_argument("--client-cert", required=True, help="client certificate for upstream")
    p.add_argument("--client-key", required=True)
    p.add_argument("--serve-cert", required=True, help="certificate served to clients")
    p.add_argument("--serve-key", required=True)
    p.add_argument("--ready-file", help="where to write the listening addresses as JSON")
    p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    VERBOSE = args.verbose

    proxy = Proxy(args)
    chost, cport = split_hostport(args.control)
    control = http.server.ThreadingHTTPServer((chost, cport), control_handler(proxy))
    control_addr = "%s:%d" % control.server_address[:2]

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threading.Thread(target=proxy.serve, daemon=True, name="accept").start()
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.25},
                     daemon=True, name="control").start()

    ready = json.dumps({"listen": proxy.listen_addr, "control": control_addr})
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(ready + "\n")
        os.replace(tmp, args.ready_file)
    print(ready, flush=True)
    log(f"listening on {proxy.listen_addr} (control {control_addr}), "
        f"upstream {args.upstream}")

    while not stop.wait(0.5):
        pass
    log("stopping")
    proxy.stopping.set()
    control.shutdown()
    control.server_close()
    proxy.listener.close()
    proxy.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
