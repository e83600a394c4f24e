"""``make mutation``: mutation testing of the security and policy core, a score per module.

mutmut 3 (``[tool.mutmut]`` in pyproject.toml) copies ``spawner/`` into ``mutants/``, makes
small realistic bugs there (a ``>`` for a ``>=``, a dropped ``not``, another string) and runs
the fast unit tests that reach each one; a mutant no test fails on *survived*. The work tree
is never edited.

    python -m bench.mutation [run] [--jobs N] [MODULE ...]   run mutmut, then report
    python -m bench.mutation report [MODULE ...]             the scores of the last run
    python -m bench.mutation survivors [MODULE ...]          diffs of unexplained survivors
    python -m bench.mutation markdown [MODULE ...]           scores and survivors for docs/testing.md

MODULE is a short name from ``MODULES`` (``scopes``, ``auth``, ``policy`` …); none means all.
The score of a module is killed / (mutants checked − equivalent mutants). Equivalent mutants
(no test can fail on them: the code means the same) are listed with why in
``bench/mutation_equivalents.toml``, each with the mutated line, so a listed mutant whose code
changed is a survivor again rather than silently excused. ``report`` exits 1 when a module
scores under ``--fail-under`` (default 90).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = Path(__file__).with_name("mutation_equivalents.toml")
TIMES = REPO / "mutants" / "mutation-times.json"

# short name -> (source file, mutant-name patterns scored). kube.py: only its pure builders;
# the rest of it drives KubeSpawner and is tested against a Kubernetes double (integration).
# environments.py: only what runs without uv (below).
MODULES: dict[str, tuple[str, list[str]]] = {
    "scopes": ("spawner/app_server/scopes.py", ["spawner.app_server.scopes.*"]),
    "names": ("spawner/names.py", ["spawner.names.*"]),
    "options": ("spawner/options.py", ["spawner.options.*"]),
    "sharing": ("spawner/sharing.py", ["spawner.sharing.*"]),
    "quota": ("spawner/quota.py", ["spawner.quota.*"]),
    "events": ("spawner/audit/events.py", ["spawner.audit.events.*"]),
    "kube": (
        "spawner/kube.py",
        [
            "spawner.kube.x_profile_overrides__mutmut_*",
            "spawner.kube.x_restricted_pod_security_context__mutmut_*",
            "spawner.kube.x_restricted_container_security_context__mutmut_*",
            # no credential in a pod spec (#16)
            "spawner.kube.x_move_credentials__mutmut_*",
            "spawner.kube.x_data_volume_name__mutmut_*",
        ],
    ),
    "store": ("spawner/audit/store.py", ["spawner.audit.store.*"]),
    "policy": ("spawner/policy.py", ["spawner.policy.*"]),
    "auth": ("spawner/app_server/auth.py", ["spawner.app_server.auth.*"]),
    "service": ("spawner/audit/service.py", ["spawner.audit.service.*"]),
    # the usage page, split from service.py (#13): its words, times, chart and handler
    "pages": ("spawner/audit/pages.py", ["spawner.audit.pages.*"]),
    # new code of the isolation work (#12)
    "activity_guard": ("spawner/activity_guard.py", ["spawner.activity_guard.*"]),
    "hub_host": ("spawner/hub_host.py", ["spawner.hub_host.*"]),
    "unix_users": ("spawner/unix_users.py", ["spawner.unix_users.*"]),
    # the hub routes the named-server limit and the audit recorder read (#13)
    "routes": ("spawner/routes.py", ["spawner.routes.*"]),
    # the publishing core (#14): an app's files checked and stored by digest, its versions
    "bundles": ("spawner/bundles.py", ["spawner.bundles.*"]),
    "versions": ("spawner/versions.py", ["spawner.versions.*"]),
    # environments.py: what runs without uv. A build (ensure, _build, _run, clean_cache,
    # probe_platform) starts uv three times and the new interpreter once, seconds per test
    # (tests/unit/test_environments.py, left out of mutmut's selection); scored are the
    # requirements parser (what an analyst's file may say), the key, lookup and eviction, and
    # the steps of a build that only read uv's answers (the platform's view, the plan, the
    # conflict named, the check), tested with uv's answers stood in
    # (tests/unit/test_environment_requirements.py).
    "environments": (
        "spawner/environments.py",
        [
            f"spawner.environments.{name}__mutmut_*"
            for name in (
                "xǁEnvironmentBuildErrorǁ__init__",
                "xǁRequirementsRefusedǁ__init__",
                "xǁPlatformConflictǁ__init__",
                "xǁRequirementsǁtext",
                "xǁRequirementsǁ__bool__",
                "x__normalize_url",
                "x_redact_url",
                "x__logical_lines",
                "x_parse_requirements",
                "x__check_option",
                "x__parse_requirement",
                "xǁPlatformǁconstraints",
                "x_disk_usage",
                "x_copy_metadata",
                "x_human_bytes",
                "x__clean_env",
                "xǁ_Logǁadd",
                "xǁEnvironmentStoreǁkey",
                "xǁEnvironmentStoreǁget",
                "xǁEnvironmentStoreǁlist",
                "xǁEnvironmentStoreǁtouch",
                "xǁEnvironmentStoreǁ_keep_failed_log",
                "xǁEnvironmentStoreǁfailed_log",
                "xǁEnvironmentStoreǁ_site_packages",
                "xǁEnvironmentStoreǁ_check",
                "xǁEnvironmentStoreǁ_resolve",
                "xǁEnvironmentStoreǁ_platform_view",
                "xǁEnvironmentStoreǁ_resolution_error",
                "xǁEnvironmentStoreǁ_conflict",
                "xǁEnvironmentStoreǁ_redact",
                "xǁEnvironmentStoreǁ_uv_env",
                "xǁEnvironmentStoreǁ_index_args",
                "xǁEnvironmentStoreǁ_uv",
                "xǁEnvironmentStoreǁ_timeout_sentence",
                "xǁEnvironmentStoreǁevict",
                "xǁEnvironmentStoreǁremove",
                "xǁEnvironmentStoreǁ_clear_stale_builds",
                "x__uv_error",
                "x__readable_by_all",
                "x__report",
            )
        ],
    ),
}

KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def _status(code) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[code]


def _results(module: str) -> dict[str, str]:
    """mutant name -> status, for the scored mutants of ``module`` (empty before any run)."""
    path, patterns = MODULES[module]
    meta = REPO / "mutants" / (path + ".meta")
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {k: _status(v) for k, v in codes.items() if any(fnmatch.fnmatch(k, p) for p in patterns)}


def _equivalents() -> dict[str, dict]:
    if not EQUIVALENTS.exists():
        return {}
    return {e["mutant"]: e for e in tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])}


def _diff(mutant: str, module: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(mutant, path=MODULES[module][0])


def _mutated_lines(diff: str) -> list[str]:
    """The lines a mutant writes; for one that only removes lines (an argument on a line of
    its own), those lines as ``(removed) <line>``, so an equivalents entry can name it."""
    lines = diff.splitlines()
    added = [
        line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")
    ]
    if added:
        return added
    return [
        f"(removed) {line[1:].strip()}"
        for line in lines
        if line.startswith("-") and not line.startswith("---")
    ]


def _classify(module: str):
    """(results, equivalent survivors, unexplained survivors, stale list entries)."""
    results = _results(module)
    listed = {
        k: v
        for k, v in _equivalents().items()
        if k in results or k.startswith(MODULES[module][0][:-3].replace("/", ".") + ".")
    }
    equivalent, stale = {}, []
    for name, entry in listed.items():
        if results.get(name) != "survived":
            continue  # killed now, or gone: nothing to excuse
        if entry["line"].strip() in _mutated_lines(_diff(name, module)):
            equivalent[name] = entry
        else:
            stale.append(name)
    survivors = sorted(
        (k for k, s in results.items() if s not in KILLED and k not in equivalent), key=_natural
    )
    return results, equivalent, survivors, stale


def _natural(name: str):
    head, _, n = name.rpartition("_")
    return (head, int(n) if n.isdigit() else 0)


def report(modules: list[str], fail_under: float) -> int:
    os.chdir(REPO)
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    print(
        f"{'module':<14} {'file':<30} {'mutants':>7} {'killed':>6} {'equiv':>5} "
        f"{'surv':>4} {'unchk':>5} {'score':>6} {'time':>6}"
    )
    worst = 100.0
    for module in modules:
        results, equivalent, survivors, stale = _classify(module)
        total = len(results)
        killed = sum(1 for s in results.values() if s in KILLED)
        unchecked = sum(1 for s in results.values() if s == "not checked")
        scored = total - unchecked - len(equivalent)
        score = 100.0 * killed / scored if scored else 0.0
        worst = min(worst, score)
        took = times.get(module)
        print(
            f"{module:<14} {MODULES[module][0]:<30} {total:>7} {killed:>6} {len(equivalent):>5} "
            f"{len(survivors) - unchecked:>4} {unchecked:>5} {score:>5.1f}% "
            f"{(f'{took / 60:.1f}m' if took else '-'):>6}"
        )
        for name in stale:
            print(
                f"    stale entry in {EQUIVALENTS.name}: {name} (its code changed): a survivor again"
            )
    print(
        f"(score = killed / (mutants - not checked - equivalent); equivalent mutants: "
        f"{EQUIVALENTS.relative_to(REPO)}; survivors: python -m bench.mutation survivors)"
    )
    if worst < fail_under:
        print(f"FAILED: a module scores under {fail_under:g}%")
        return 1
    return 0


def survivors(modules: list[str]) -> int:
    os.chdir(REPO)
    for module in modules:
        results, _, names, _ = _classify(module)
        for name in names:
            print(f"# {name}: {results[name]}")
            print(_diff(name, module))
            print()
    return 0


def markdown(modules: list[str]) -> int:
    """The table and the survivor lists of docs/testing.md, from the last run."""
    os.chdir(REPO)
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    rows, details = [], []
    for module in modules:
        results, equivalent, names, _stale = _classify(module)
        total = len(results)
        killed = sum(1 for s in results.values() if s in KILLED)
        unchecked = sum(1 for s in results.values() if s == "not checked")
        scored = total - unchecked - len(equivalent)
        score = 100.0 * killed / scored if scored else 0.0
        took = times.get(module)
        rows.append(
            f"| {module} | `{MODULES[module][0]}` | {total} | {killed} | {len(equivalent)} | "
            f"{len(names) - unchecked} | {unchecked} | {score:.1f} % | "
            f"{f'{took / 60:.1f} min' if took else '-'} |"
        )
        details.append(f"### {module} (`{MODULES[module][0]}`)\n")
        if equivalent:
            details.append(f"Equivalent ({len(equivalent)}):\n")
            for name, entry in sorted(equivalent.items(), key=lambda kv: _natural(kv[0])):
                details.append(f"- `{name.rsplit('.', 1)[1]}`: `{entry['line']}` — {entry['why']}")
            details.append("")
        surviving = [n for n in names if results[n] != "not checked"]
        if surviving:
            details.append(f"Survived ({len(surviving)}):\n")
            for name in surviving:
                line = "; ".join(_mutated_lines(_diff(name, module))) or "(a removed line)"
                details.append(f"- `{name.rsplit('.', 1)[1]}` ({results[name]}): `{line}`")
            details.append("")
        if not equivalent and not surviving:
            details.append("None.\n")
    print(
        "| module | file | mutants | killed | equivalent | survived | not checked | score | time |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print()
    print("\n".join(details))
    return 0


def _refresh_copies() -> None:
    """Bring ``mutants/``'s plain copies of ``spawner/`` up to date with the work tree.

    mutmut rewrites the files it mutates when they change, but copies every other file of
    ``spawner/`` (modules not scored, JSON schemas, templates) only once: a test that reads
    one changed since would run against the old copy and fail the run at its start.
    """
    scored = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    )
    for source in (REPO / "spawner").rglob("*"):
        relative = source.relative_to(REPO)
        if not source.is_file() or "__pycache__" in relative.parts or str(relative) in scored:
            continue
        copy = REPO / "mutants" / relative
        if copy.exists() and copy.read_bytes() != source.read_bytes():
            shutil.copy2(source, copy)


def run(modules: list[str], jobs: int, fail_under: float) -> int:
    os.chdir(REPO)
    (REPO / "mutants").mkdir(exist_ok=True)
    _refresh_copies()
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    log = REPO / "mutants" / "mutmut-run.log"
    for module in modules:
        copy = REPO / "mutants" / MODULES[module][0]
        if copy.exists() and not copy.with_name(copy.name + ".meta").exists():
            # copied unmutated before the file was listed: mutmut would keep it so, and its
            # record of which tests reach which function would not know the new file
            copy.unlink()
            (REPO / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        print(f"mutation: {module} ({MODULES[module][0]}) ...", flush=True)
        started = time.monotonic()
        with open(log, "a") as out:
            mutmut = [sys.executable, "-m", "bench.mutation", "_mutmut", "run"]
            code = subprocess.call(
                [*mutmut, "--max-children", str(jobs), *MODULES[module][1]],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        times[module] = time.monotonic() - started
        TIMES.write_text(json.dumps(times, indent=1))
        if code != 0:
            print(f"mutmut failed on {module} (exit {code}); its output is in {log}")
            return code
    return report(modules, fail_under)


def _mutmut(args: list[str]) -> int:
    """``mutmut`` itself, but its fork runner passes over a child it did not start.

    mutmut runs the clean and forced-fail tests in its own process, then reaps its workers
    with ``os.wait()``, which also returns any child a test left behind (seen with this
    suite: ``KeyError: <pid>`` in ``wait_for_result``, the run lost). Such a child is no
    worker: it is logged and the wait goes on.
    """
    from datetime import datetime

    import mutmut.workers.isolation as isolation
    from mutmut.__main__ import cli

    def wait_for_result(self, timeout=None):
        if self._no_tests_results:
            return self._no_tests_results.pop(0)
        while True:
            pid, status = os.wait()
            worker = self._running.pop(pid, None)
            if worker is not None:
                break
            print(f"(a child mutmut did not start ended: pid {pid}; passed over)", flush=True)
        return isolation.MutantResult(
            mutant_name=worker.mutant_name,
            exit_code=os.waitstatus_to_exitcode(status),
            duration=(datetime.now() - worker.start_time).total_seconds(),
        )

    isolation.ForkRunner.wait_for_result = wait_for_result
    sys.argv = ["mutmut", *args]
    return cli()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_mutmut"]:  # run() starts mutmut through this
        return _mutmut(argv[1:])
    ap = argparse.ArgumentParser(
        prog="python -m bench.mutation", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "command", nargs="?", default="run", choices=["run", "report", "survivors", "markdown"]
    )
    ap.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    ap.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("MUTATION_JOBS", "1")),
        help="mutants tested at once (default 1, or $MUTATION_JOBS)",
    )
    ap.add_argument("--fail-under", type=float, default=90.0)
    args = ap.parse_intermixed_args(argv)  # `run --jobs 2 names` as `--jobs 2 run names`
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)
    if args.command == "report":
        return report(modules, args.fail_under)
    if args.command == "survivors":
        return survivors(modules)
    if args.command == "markdown":
        return markdown(modules)
    return run(modules, args.jobs, args.fail_under)


if __name__ == "__main__":
    sys.exit(main())
