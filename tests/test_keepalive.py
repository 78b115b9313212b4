"""Kept-alive connections are recycled after `requests` answers (serving/keepalive.py), on a real uvicorn server."""
import socket
import threading
import time

import httpx
import uvicorn

from omnidecide.serving.keepalive import RecycleConnections


def _serve(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def test_every_third_answer_closes_its_connection():
    clients: list[tuple] = []

    async def app(scope, receive, send):
        clients.append(tuple(scope["client"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server, url = _serve(RecycleConnections(app, requests=3))
    try:
        with httpx.Client() as c:  # one client, keep-alive: a new connection only when the server closed the last
            answers = [c.get(url) for _ in range(7)]
    finally:
        server.should_exit = True
    assert [a.status_code for a in answers] == [200] * 7
    assert [a.headers.get("connection") for a in answers] == [None, None, "close"] * 2 + [None]
    assert len(set(clients[:3])) == 1 and len(set(clients[3:6])) == 1 and len(set(clients[6:])) == 1
    assert len({clients[0], clients[3], clients[6]}) == 3  # three connections, each used three times at most


def test_zero_keeps_connections_open():
    clients: list[tuple] = []

    async def app(scope, receive, send):
        clients.append(tuple(scope["client"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server, url = _serve(RecycleConnections(app, requests=0))
    try:
        with httpx.Client() as c:
            for _ in range(5):
                assert c.get(url).status_code == 200
    finally:
        server.should_exit = True
    assert len(set(clients)) == 1
