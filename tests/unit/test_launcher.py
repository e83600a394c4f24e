import asyncio
import json
import socket

from spawner.app_server.launcher import bind_listening_socket, streamlit_options
from tests.helpers.app_settings import demo_settings


async def _nodelay_of_accepted(sock) -> int:
    seen = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        s = writer.get_extra_info("socket")
        seen.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    port = sock.getsockname()[1]
    _, w = await asyncio.open_connection("127.0.0.1", port)
    value = await asyncio.wait_for(seen, 5)
    w.close()
    server.close()
    await server.wait_closed()
    return value


def test_accepted_connections_get_tcp_nodelay():
    sock = bind_listening_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(_nodelay_of_accepted(sock)) != 0


def test_the_trap_a_proto_zero_socket_leaves_nagle_on():
    # What Streamlit 1.67 does itself; this is the ~44 ms per keep-alive response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    assert asyncio.run(_nodelay_of_accepted(sock)) == 0


def test_security_options_are_forced():
    s = demo_settings(bind_port=1234)
    opts = streamlit_options(s)
    assert opts["server.baseUrlPath"] == "user/alice/demo"
    assert json.loads(opts["server.trustedUserHeaders"]) == {
        "X-Hub-User": "name",
        "X-Hub-Groups": "groups",
    }
    assert opts["browser.gatherUsageStats"] is False
    assert (opts["server.address"], opts["server.port"]) == ("127.0.0.1", 1234)
