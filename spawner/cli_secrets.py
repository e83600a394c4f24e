"""``streamlit-hub secrets``: an app's secrets from the command line (#16 point 5).

    streamlit-hub secrets list --app NAME            names, when each was set and by whom
    streamlit-hub secrets set SECRET --app NAME      the value from a prompt (not echoed) or,
                                                     with --stdin, from standard input
    streamlit-hub secrets delete SECRET --app NAME

It speaks the hub's app secrets API (``spawner/app_secrets_api.py``) with the token
``streamlit-hub login`` stored (``spawner/cli.py``). A value is never an argument (arguments
end up in shell history and in every process listing), never printed and never in an error;
``--stdin`` reads it whole, less one final newline (``printf %s "$PW" | ...`` keeps it exact).
An app gets its secrets when it starts: ``set`` and ``delete`` say when it must restart.
"""

from __future__ import annotations

import getpass
import sys


def _hub(args):
    return args.cli.Hub(*args.cli.load_credentials())


def _api(hub, app: str, name: str = "") -> str:
    return hub.app_api(app, "/secrets" + (f"/{name}" if name else ""))


def read_value(from_stdin: bool, CLIError=None) -> str:
    """The value to set: all of standard input less one final newline, or a prompt."""
    if CLIError is None:
        from .cli import CLIError
    if from_stdin:
        value = sys.stdin.read()
        value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    else:
        if not sys.stdin.isatty():
            raise CLIError("No terminal to ask for the value: pipe it in with --stdin.")
        value = getpass.getpass("Value (not shown): ")
    if not value:
        raise CLIError("No value given: nothing was set.")
    return value


def cmd_list(args) -> int:
    hub = _hub(args)
    data = hub.request("GET", _api(hub, args.app)).json()
    if not data["secrets"]:
        print(f"{args.app} has no secrets.")
    for s in data["secrets"]:
        when = s["set_at"][:16].replace("T", " ")
        print(f"{s['name']:<32} set {when} UTC by {s['set_by']}")
    if data.get("restart_needed"):
        print(f"{args.app} runs with earlier secrets: restart it to apply the changes.")
    return 0


def _restart_hint(app: str, running: bool) -> str:
    if running:
        return f"Restart {app} to apply it (it runs with its earlier secrets)."
    return f"{app} gets it when it next starts."


def cmd_set(args) -> int:
    hub = _hub(args)
    value = read_value(args.stdin, args.cli.CLIError)
    data = hub.request("PUT", _api(hub, args.app, args.secret), json={"value": value}).json()
    print(f"{args.secret} is set. " + _restart_hint(args.app, data.get("restart_needed")))
    return 0


def cmd_delete(args) -> int:
    hub = _hub(args)
    hub.request("DELETE", _api(hub, args.app, args.secret))
    running = hub.request("GET", _api(hub, args.app)).json().get("running")
    hint = f" Restart {args.app} to apply it (it still has it)." if running else ""
    print(f"{args.secret} is deleted.{hint}")
    return 0


def add_commands(sub, cli) -> None:
    """Add ``secrets list|set|delete`` to ``streamlit-hub``'s subcommands; ``cli`` is the
    running ``spawner.cli`` module (``__main__`` under ``python -m``: its own error class)."""
    secrets = sub.add_parser("secrets", help="list, set or delete an app's secrets")
    actions = secrets.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the app's secrets: names, when set, by whom")
    listing.add_argument("--app", required=True)
    listing.set_defaults(run=cmd_list, cli=cli)
    setting = actions.add_parser(
        "set", help="set or replace one (the value from a prompt, or --stdin; never an argument)"
    )
    setting.add_argument("secret", help="its name, an environment variable name: DB_PASSWORD")
    setting.add_argument("--app", required=True)
    setting.add_argument("--stdin", action="store_true", help="read the value from stdin")
    setting.set_defaults(run=cmd_set, cli=cli)
    deleting = actions.add_parser("delete", help="delete one")
    deleting.add_argument("secret")
    deleting.add_argument("--app", required=True)
    deleting.set_defaults(run=cmd_delete, cli=cli)
