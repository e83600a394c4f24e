"""A minimal Streamlit websocket client: what the browser's frontend does, in Python.

It opens ``<prefix>_stcore/stream`` with the ``streamlit`` subprotocol, sends a BackMsg
``rerun_script`` and reads ForwardMsgs until ``script_finished``. It uses Streamlit's own
protobuf classes, so it speaks exactly the protocol of the installed Streamlit.
"""

from __future__ import annotations

import asyncio
import time

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg


class WebsocketRefused(Exception):
    pass


def ws_url(http_base: str, prefix: str) -> str:
    return http_base.replace("http://", "ws://", 1).rstrip("/") + prefix + "_stcore/stream"


async def run_session(
    url: str,
    headers: dict | None = None,
    *,
    reruns: int = 1,
    timeout: float = 30.0,
    origin: str | None = None,
    pages: list[str] | None = None,
) -> dict:
    """Connect, rerun the script ``reruns`` times, return what happened.

    ``pages``: page names to run in turn (what clicking in the sidebar does), one per rerun;
    "" is the main page. Raises WebsocketRefused if the upgrade is refused (HTTP status
    instead of 101).
    """
    hdrs = dict(headers or {})
    try:
        ws = await asyncio.wait_for(
            websockets.connect(
                url,
                subprotocols=["streamlit"],
                additional_headers=hdrs,
                origin=origin,
                max_size=None,
                open_timeout=timeout,
            ),
            timeout,
        )
    except websockets.exceptions.InvalidStatus as e:
        raise WebsocketRefused(e.response.status_code) from None
    except websockets.exceptions.InvalidHandshake as e:
        raise WebsocketRefused(str(e)) from None
    texts: list[str] = []
    finished = 0
    times = []
    async with ws:
        for i in range(len(pages) if pages is not None else reruns):
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = ""
            if pages is not None:
                msg.rerun_script.page_name = pages[i]
            t0 = time.perf_counter()
            await ws.send(msg.SerializeToString())
            deadline = time.monotonic() + timeout
            while True:
                raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                fwd = ForwardMsg()
                fwd.ParseFromString(raw)
                kind = fwd.WhichOneof("type")
                if kind == "delta":
                    texts.append(str(fwd.delta))
                if kind == "script_finished":
                    finished += 1
                    times.append(time.perf_counter() - t0)
                    break
    return {"finished": finished, "texts": texts, "times": times}


def session(url, headers=None, **kw) -> dict:
    return asyncio.run(run_session(url, headers, **kw))
