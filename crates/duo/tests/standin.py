#!/usr/bin/python3
"""A test stand-in for Duo's Auth API v2, for portcullis' tests.

This is our own code, written from Duo's published protocol description
(https://duo.com/docs/authapi): it serves the Auth API v2 endpoints that the
portcullis Duo client uses (ping, check, preauth, auth, auth_status) over HTTPS
on 127.0.0.1 and VERIFIES the signature of every request the way Duo does
(signature version 2: HMAC-SHA512 under the secret key of the canonical request
"date\\nMETHOD\\nhost\\npath\\nparams", sent as HTTP Basic "ikey:hexsig"), so a
client bug in signing shows up as a 401 here just as it would against Duo.

What each call answers is scripted by the username's prefix (see PREAUTH and
push_fate below), and a few unsigned control endpoints under /stand-in/ let a
test approve or deny a pending push, skew the clock, read counters and reset.

Usage:
    /usr/bin/python3 standin.py --cert CERT --key KEY --ikey IKEY \\
        --skey-file FILE [--port 0] [--long-poll 2]

It binds 127.0.0.1 (port 0: a free port), prints exactly one line
"listening PORT" on stdout once it accepts connections, and runs until
SIGTERM or SIGINT, on which it exits 0. Diagnostics go to stderr only.

Needs Python 3 and aiohttp (Debian: python3-aiohttp).
"""

import argparse
import asyncio
import base64
import calendar
import collections
import email.utils
import hashlib
import hmac
import json
import signal
import ssl
import sys
import time
import urllib.parse
import uuid

import aiohttp
from aiohttp import web

# How far a request's date may be from our clock, as Duo allows.
MAX_SKEW = 300

# The one passcode that works (each user may use it once).
GOOD_PASSCODE = "135790"

# How long a scripted push takes to be answered by the "device".
PUSH_DELAY = 0.3

# The device every "auth" user has.
DEVICE = {
    "device": "DPFZRS9FB0D46QFTM891",
    "type": "phone",
    "number": "XXX-XXX-0100",
    "name": "Alice's iPhone",
    "display_name": "iOS (XXX-XXX-0100)",
    "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"],
}

# The final answers of a push, as auth_status (and a synchronous auth) gives them.
FINAL = {
    "allow": {"result": "allow", "status": "allow", "status_msg": "Success. Logging you in..."},
    "deny": {"result": "deny", "status": "deny", "status_msg": "Login request denied."},
    # Not a result Duo documents: a client must treat anything but "allow" as a denial.
    "maybe": {"result": "maybe", "status": "maybe", "status_msg": "Something unexpected happened."},
}
WAITING = {"result": "waiting", "status": "pushed", "status_msg": "Pushed a login request to your device..."}

BAD_SIGNATURE = (40103, "Invalid signature in request credentials")
BAD_PARAMS = (40002, "Invalid request parameters")
MISSING_PARAMS = (40001, "Missing required request parameters")


# ---------------------------------------------------------------------------
# Envelopes


def ok(response, status=200):
    """Duo's success envelope."""
    return web.json_response({"stat": "OK", "response": response}, status=status)


def fail(code, message, status=400, headers=None):
    """Duo's failure envelope; the HTTP status follows the code's first three digits."""
    return web.json_response({"stat": "FAIL", "code": code, "message": message}, status=status, headers=headers)


# ---------------------------------------------------------------------------
# Signature verification (signature version 2)


def canon_params(params):
    """The parameters as Duo signs them: every key and value percent-encoded with only
    A-Za-z0-9-._~ left as they are (Python's quote(s, '~')), sorted by key, a key's
    values sorted, joined by '&'. `params` maps a decoded key to its decoded values."""
    pairs = []
    encoded = {}
    for key, values in params.items():
        encoded[urllib.parse.quote(key, "~")] = sorted(urllib.parse.quote(v, "~") for v in values)
    for key in sorted(encoded):
        for value in encoded[key]:
            pairs.append("%s=%s" % (key, value))
    return "&".join(pairs)


def canonical(date, method, host, path, params):
    """The canonical request of signature version 2, five lines."""
    return "\n".join([date, method.upper(), host.lower(), path, canon_params(params)])


def parse_params(text):
    """Decodes a query string or form body into {key: [values]} (a '+' is a space,
    blank values kept), as Duo reads what it then re-encodes for the signature."""
    params = collections.OrderedDict()
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"):
        params.setdefault(key, []).append(value)
    return params


def host_of(request):
    """The Host header without its port, lower case (an IPv6 literal keeps its brackets)."""
    host = request.headers.get("Host", "")
    if host.startswith("["):
        end = host.find("]")
        host = host[: end + 1] if end >= 0 else host
    elif ":" in host:
        host = host.rsplit(":", 1)[0]
    return host.lower()


def parse_date(text):
    """Unix seconds of an RFC 2822 date, or None. A '-0000' zone counts as UTC."""
    if not text:
        return None
    try:
        parts = email.utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parts is None:
        return None
    try:
        return calendar.timegm(parts[:6]) - (parts[9] or 0)
    except (TypeError, ValueError, OverflowError):
        return None


def split_basic(header):
    """(ikey, hexsig) of an 'Authorization: Basic base64(ikey:hexsig)' header, or None."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    ikey, sep, sig = decoded.partition(":")
    return (ikey, sig) if sep else None


# ---------------------------------------------------------------------------
# State


class Push:
    """One push transaction: whose, its scripted fate, and its result once decided."""

    def __init__(self, txid, username, fate):
        self.txid = txid
        self.username = username
        self.fate = fate
        self.result = None  # "allow", "deny" or "maybe" once decided
        self.decided = asyncio.Event()

    def decide(self, result):
        if self.result is None:
            self.result = result
            self.decided.set()


def push_fate(username):
    """What becomes of a push for `username`: a result after PUSH_DELAY, or
    "timeout" (never answered), "manual" (/stand-in/approve or /deny), "statusfail"
    (auth_status fails)."""
    for prefix, fate in (
        ("deny", "deny"),
        ("timeout", "timeout"),
        ("manual", "manual"),
        ("weird", "maybe"),
        ("statusfail", "statusfail"),
    ):
        if username.startswith(prefix):
            return fate
    return "allow"


class State:
    def __init__(self, long_poll):
        self.default_long_poll = long_poll
        self.reset()

    def reset(self):
        self.long_poll = self.default_long_poll
        self.skew = 0
        self.pushes = collections.Counter()
        self.push_params = collections.defaultdict(list)
        self.preauth = collections.Counter()
        self.passcodes = collections.Counter()
        self.used_passcodes = collections.defaultdict(set)
        self.bad_signatures = 0
        self.requests = 0
        self.txns = {}  # txid -> Push
        self.by_user = collections.defaultdict(list)  # username -> [Push], oldest first

    def now(self):
        """The stand-in's clock, skewed by /stand-in/skew."""
        return int(time.time()) + self.skew

    def stats(self):
        return {
            "pushes": dict(self.pushes),
            "push_params": {u: list(p) for u, p in self.push_params.items()},
            "preauth": dict(self.preauth),
            "passcodes": dict(self.passcodes),
            "bad_signatures": self.bad_signatures,
            "requests": self.requests,
        }


STATE = web.AppKey("state", State) if hasattr(web, "AppKey") else "state"
IKEY = web.AppKey("ikey", str) if hasattr(web, "AppKey") else "ikey"
SKEY = web.AppKey("skey", bytes) if hasattr(web, "AppKey") else "skey"


# ---------------------------------------------------------------------------
# The signed-request gate


@web.middleware
async def gate(request, handler):
    """Counts and checks every Auth API request: all of /auth/v2/ but ping must carry a
    valid signature of a date within MAX_SKEW of our clock. The decoded parameters are
    left in request["params"] for the handlers."""
    path = request.path
    if not path.startswith("/auth/v2/"):
        return await handler(request)
    state = request.app[STATE]
    state.requests += 1

    raw_path, _, raw_query = request.raw_path.partition("?")
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.read()
        params = parse_params(body.decode("utf-8", errors="replace"))
    else:
        params = parse_params(raw_query)
    request["params"] = params

    if path == "/auth/v2/ping":
        return await handler(request)

    date = request.headers.get("X-Duo-Date") or request.headers.get("Date")
    when = parse_date(date)
    creds = split_basic(request.headers.get("Authorization"))
    good = False
    if when is not None and abs(when - state.now()) <= MAX_SKEW and creds is not None:
        ikey, sig = creds
        expected = hmac.new(
            request.app[SKEY],
            canonical(date, request.method, host_of(request), raw_path, params).encode("utf-8"),
            hashlib.sha512,
        ).hexdigest()
        good = hmac.compare_digest(ikey.encode("utf-8"), request.app[IKEY].encode("utf-8")) & hmac.compare_digest(
            sig.encode("utf-8"), expected.encode("utf-8")
        )
    if not good:
        state.bad_signatures += 1
        return fail(*BAD_SIGNATURE, status=401)
    return await handler(request)


def param(request, name):
    """The first value of a parameter, or None."""
    values = request["params"].get(name)
    return values[0] if values else None


# ---------------------------------------------------------------------------
# Auth API v2


async def ping(request):
    return ok({"time": request.app[STATE].now()})


async def check(request):
    return ok({"time": request.app[STATE].now()})


async def preauth(request):
    state = request.app[STATE]
    username = param(request, "username")
    if not username:
        return fail(*MISSING_PARAMS)
    state.preauth[username] += 1

    if username.startswith("enroll"):
        return ok({
            "result": "enroll",
            "status_msg": "Enroll an authentication device to proceed",
            "enroll_portal_url": "https://enroll.example/portal?code=x",
        })
    if username.startswith("bypass"):
        return ok({"result": "allow", "status_msg": "Allowing unknown user"})
    if username.startswith("denied"):
        return ok({"result": "deny", "status_msg": "Your account is disabled"})
    if username.startswith("fail"):
        return fail(*BAD_PARAMS)
    if username.startswith("badjson"):
        return web.Response(status=200, text='{"stat": "OK", "response": ', content_type="application/json")
    if username.startswith("error"):
        return fail(50000, "Internal server error", status=500)
    if username.startswith("ratelimit"):
        # The first two calls for this name are refused, then it is let through.
        if state.preauth[username] <= 2:
            return fail(42901, "Too Many Requests", status=429, headers={"Retry-After": "1"})
        return ok({"result": "allow", "status_msg": "Allowing unknown user"})
    if username.startswith("slow"):
        await asyncio.sleep(5)
        return ok({"result": "allow", "status_msg": "Allowing unknown user"})
    return ok({"result": "auth", "status_msg": "Account is active", "devices": [DEVICE]})


def start_push(state, username):
    """A new push transaction for `username`, with its fate set in motion."""
    push = Push(str(uuid.uuid4()), username, push_fate(username))
    state.txns[push.txid] = push
    state.by_user[username].append(push)
    if push.fate in ("allow", "deny", "maybe"):
        asyncio.get_running_loop().call_later(PUSH_DELAY, push.decide, push.fate)
    return push


async def auth(request):
    state = request.app[STATE]
    username = param(request, "username")
    factor = param(request, "factor")
    if not username or not factor:
        return fail(*MISSING_PARAMS)

    if factor == "passcode":
        passcode = param(request, "passcode")
        if passcode is None:
            return fail(*MISSING_PARAMS)
        state.passcodes[username] += 1
        if passcode == GOOD_PASSCODE and passcode not in state.used_passcodes[username]:
            state.used_passcodes[username].add(passcode)
            return ok(FINAL["allow"])
        return ok({"result": "deny", "status": "deny", "status_msg": "Incorrect passcode. Please try again."})

    if factor not in ("push", "auto"):
        return fail(*BAD_PARAMS)

    state.pushes[username] += 1
    state.push_params[username].append({k: v[0] if len(v) == 1 else v for k, v in request["params"].items()})
    push = start_push(state, username)
    if param(request, "async") == "1":
        return ok({"txid": push.txid})
    # Synchronous: answer once the push is decided (never, for a timeout* user).
    if push.fate == "statusfail":
        return fail(*BAD_PARAMS)
    await push.decided.wait()
    return ok(FINAL[push.result])


async def auth_status(request):
    state = request.app[STATE]
    txid = param(request, "txid")
    if not txid:
        return fail(*MISSING_PARAMS)
    push = state.txns.get(txid)
    if push is None or push.fate == "statusfail":
        return fail(*BAD_PARAMS)
    if push.result is None:
        # Long poll: hold the request until the push is decided or the poll runs out.
        try:
            await asyncio.wait_for(push.decided.wait(), timeout=state.long_poll)
        except asyncio.TimeoutError:
            return ok(WAITING)
    # A decided transaction keeps its answer, as Duo's does.
    return ok(FINAL[push.result])


async def not_found(request):
    return fail(40401, "Resource not found", status=404)


# ---------------------------------------------------------------------------
# Control endpoints for tests (unsigned)


async def control_param(request, name):
    """A parameter of a control call, from the query string or a form body."""
    if name in request.query:
        return request.query[name]
    if request.can_read_body:
        form = await request.post()
        if name in form:
            return form[name]
    return None


async def stats(request):
    return web.json_response(request.app[STATE].stats())


async def reset(request):
    request.app[STATE].reset()
    return ok({})


async def decide_latest(request, result):
    """Applies `result` to the named user's latest pending push."""
    state = request.app[STATE]
    username = await control_param(request, "username")
    for push in reversed(state.by_user.get(username or "", [])):
        if push.result is None:
            push.decide(result)
            return ok({"txid": push.txid, "result": result})
    return fail(40401, "No pending push for that user", status=404)


async def approve(request):
    return await decide_latest(request, "allow")


async def deny(request):
    return await decide_latest(request, "deny")


async def skew(request):
    try:
        seconds = int(await control_param(request, "seconds"))
    except (TypeError, ValueError):
        return fail(*BAD_PARAMS)
    request.app[STATE].skew = seconds
    return ok({"skew": seconds})


async def long_poll(request):
    try:
        seconds = float(await control_param(request, "seconds"))
    except (TypeError, ValueError):
        return fail(*BAD_PARAMS)
    request.app[STATE].long_poll = seconds
    return ok({"long_poll": seconds})


# ---------------------------------------------------------------------------
# Serving


def make_app(ikey, skey, long_poll_seconds):
    app = web.Application(middlewares=[gate])
    app[STATE] = State(long_poll_seconds)
    app[IKEY] = ikey
    app[SKEY] = skey
    app.router.add_get("/auth/v2/ping", ping)
    app.router.add_get("/auth/v2/check", check)
    app.router.add_post("/auth/v2/preauth", preauth)
    app.router.add_post("/auth/v2/auth", auth)
    app.router.add_get("/auth/v2/auth_status", auth_status)
    app.router.add_route("*", "/auth/v2/{rest:.*}", not_found)
    app.router.add_get("/stand-in/stats", stats)
    app.router.add_post("/stand-in/reset", reset)
    app.router.add_post("/stand-in/approve", approve)
    app.router.add_post("/stand-in/deny", deny)
    app.router.add_post("/stand-in/skew", skew)
    app.router.add_post("/stand-in/long-poll", long_poll)
    return app


async def serve(args):
    with open(args.skey_file, "rb") as f:
        skey = f.read().rstrip(b"\r\n")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)

    app = make_app(args.ikey, skey, args.long_poll)
    # Held requests (a long poll, a synchronous push that never ends) must not hold up
    # the exit: a short shutdown timeout, given where this aiohttp takes it.
    new_api = tuple(int(x) for x in aiohttp.__version__.split(".")[:2]) >= (3, 9)
    runner = web.AppRunner(app, access_log=None, **({"shutdown_timeout": 0.2} if new_api else {}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=tls, **({} if new_api else {"shutdown_timeout": 0.2}))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("listening %d" % port, flush=True)
    await stop.wait()
    try:
        await asyncio.wait_for(runner.cleanup(), timeout=3)
    except asyncio.TimeoutError:
        pass


def main():
    global PUSH_DELAY
    parser = argparse.ArgumentParser(description="A stand-in for Duo's Auth API v2, for tests.")
    parser.add_argument("--cert", required=True, help="PEM certificate (chain) to serve")
    parser.add_argument("--key", required=True, help="PEM private key of the certificate")
    parser.add_argument("--ikey", required=True, help="the integration key requests must carry")
    parser.add_argument("--skey-file", required=True, help="file holding the secret key (a trailing newline is dropped)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--long-poll", type=float, default=2.0, help="seconds auth_status holds a pending request")
    parser.add_argument("--push-delay", type=float, default=PUSH_DELAY,
                        help="seconds the scripted device takes to answer a push (0: at once, for benchmarks)")
    # (the default is read before the option replaces it)
    args = parser.parse_args()
    PUSH_DELAY = args.push_delay
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
