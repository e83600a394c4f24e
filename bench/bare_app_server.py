"""Bench reference: the same Streamlit st.App, served the same way, with NO hub auth layer.

``python -m bench.bare_app_server ENTRY PORT PREFIX`` serves ENTRY at 127.0.0.1:PORT under
PREFIX with the TCP_NODELAY fix (the socket bound with IPPROTO_TCP). Behind CHP it is "the
limit": what a proxy in front of Streamlit costs with no authentication at all.
"""

import sys

from spawner.app_server.launcher import (
    _uvicorn_kwargs,
    apply_streamlit_options,
    bind_listening_socket,
)


def main():
    entry, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    import os

    import streamlit as st
    import uvicorn
    from streamlit import config as st_config

    os.chdir(os.path.dirname(os.path.abspath(entry)))
    st_config._main_script_path = os.path.abspath(entry)
    apply_streamlit_options(
        {
            "server.baseUrlPath": prefix.strip("/"),
            "server.address": "127.0.0.1",
            "server.port": port,
            "server.headless": True,
            "browser.gatherUsageStats": False,
            "server.fileWatcherType": "none",
        }
    )
    app = st.App(os.path.abspath(entry))
    sock = bind_listening_socket("127.0.0.1", port)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **_uvicorn_kwargs())).run(
        sockets=[sock]
    )


if __name__ == "__main__":
    main()
