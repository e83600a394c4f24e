"""`make bench` (bench/__main__.py) and its parts; what several of them share is here."""


def streamlit_flags(port) -> list[str]:
    """`streamlit run`'s flags for every bare reference: loopback, headless, no watcher."""
    return [
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
