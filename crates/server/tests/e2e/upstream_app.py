"""The app behind portcullis in the reverse-proxy tests (aiohttp, from Debian's python3-aiohttp).

  serve PORT           /page: an HTML page naming Remote-User, whose script asks /ws "whoami"
                       /headers: the request as the app saw it (JSON)
                       /big?mib=N: N MiB streamed in 64 KiB chunks (pattern below)
                       /upload (POST): length and SHA-256 of the body, read as a stream
                       /ws: WebSocket echo; the text "whoami" answers the Remote-User header
  ws URL [HEADER ...]  a WebSocket client: echoes of a text, a 1 MiB binary and "whoami",
                       printed as JSON, or the refused handshake's status (wss:// trusts
                       the CA file in $PORTCULLIS_TEST_CA)
"""

import asyncio
import hashlib
import html
import json
import time
import os
import ssl
import sys

from aiohttp import ClientSession, WSMsgType, web, WSServerHandshakeError

CHUNK = 65536
BASE = bytes(range(251)) * 263  # 66013 bytes: chunk i is BASE[i % 251 : i % 251 + CHUNK]


async def headers(request):
    return web.json_response(
        {"host": request.host, "path": request.path_qs, "headers": [[k.lower(), v] for k, v in request.headers.items()]}
    )


PAGE = """<!doctype html><meta charset="utf-8"><title>Protected app</title>
<h1>Protected app</h1><p id="user">Signed in as %s</p><p id="ws">WebSocket connecting</p>
<script>
const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
socket.onopen = () => socket.send("whoami");
socket.onmessage = (e) => { document.getElementById("ws").textContent = "WebSocket says " + e.data; };
socket.onerror = () => { document.getElementById("ws").textContent = "WebSocket failed"; };
</script>"""


async def page(request):
    user = html.escape(request.headers.get("Remote-User", "(nobody)"))
    return web.Response(text=PAGE % user, content_type="text/html")


async def big(request):
    mib = int(request.query.get("mib", "1"))
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    for i in range(mib * 16):
        await response.write(BASE[i % 251 : i % 251 + CHUNK])
    await response.write_eof()
    return response


async def upload(request):
    digest, length = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        length += len(chunk)
    return web.json_response({"length": length, "sha256": digest.hexdigest()})


async def ws(request):
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for msg in socket:
        if msg.type == WSMsgType.TEXT:
            reply = "user=" + request.headers.get("Remote-User", "") if msg.data == "whoami" else msg.data
            await socket.send_str(reply)
        elif msg.type == WSMsgType.BINARY:
            await socket.send_bytes(msg.data)
    return socket


async def client(url, extra):
    headers = dict(h.split(": ", 1) for h in extra)
    payload = bytes((i * 31) % 256 for i in range(1 << 20))
    ca = os.environ.get("PORTCULLIS_TEST_CA")
    context = ssl.create_default_context(cafile=ca) if ca else None
    async with ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers, max_msg_size=4 << 20, ssl=context) as socket:
                await socket.send_str("hello through the gate")
                text = (await socket.receive()).data
                await socket.send_bytes(payload)
                echoed = (await socket.receive()).data
                await socket.send_str("whoami")
                who = (await socket.receive()).data
                print(json.dumps({"text": text, "binary_intact": echoed == payload, "who": who}))
        except WSServerHandshakeError as e:
            print(json.dumps({"refused": e.status}))


async def hold(url, extra):
    """Connects, answers `open`, then waits (at most 60 s) for the far side to close."""
    headers = dict(h.split(": ", 1) for h in extra)
    async with ClientSession() as session:
        async with session.ws_connect(url, headers=headers) as socket:
            await socket.send_str("ping")
            first = (await socket.receive()).data
            print(json.dumps({"open": first == "ping"}), flush=True)
            started = time.monotonic()
            try:
                msg = await asyncio.wait_for(socket.receive(), timeout=60)
                closed = msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
            except asyncio.TimeoutError:
                closed = False
            print(json.dumps({"closed": closed, "after": round(time.monotonic() - started, 1)}), flush=True)


def main():
    if sys.argv[1] == "serve":
        app = web.Application(client_max_size=1 << 40)
        app.add_routes([web.get("/page", page), web.get("/headers", headers), web.get("/big", big), web.post("/upload", upload), web.get("/ws", ws)])
        web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None)
    elif sys.argv[1] == "hold":
        asyncio.run(hold(sys.argv[2], sys.argv[3:]))
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3:]))


if __name__ == "__main__":
    main()
