"""The audit service's start: a held port or an unusable store is one sentence, exit 2."""

import socket


def _service_env(monkeypatch, db, port):
    for k, v in {
        "STREAMLIT_HUB_AUDIT_DB_URL": db,
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_CLIENT_ID": "service-audit",
    }.items():
        monkeypatch.setenv(k, v)


def test_main_says_in_one_line_that_its_port_is_held(monkeypatch, tmp_path, capsys):
    import spawner.audit.service as service_module

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        _service_env(monkeypatch, f"sqlite:///{tmp_path / 'a.sqlite'}", port)
        assert service_module.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamlit-hub-audit: cannot listen on 127.0.0.1:{port} (the hub's ")
    assert "STREAMLIT_HUB_AUDIT_PORT" in err and "Traceback" not in err and err.count("\n") == 1


def test_main_says_in_one_line_that_its_store_is_unusable_and_hides_the_password(
    monkeypatch, tmp_path, capsys
):
    import spawner.audit.service as service_module

    (tmp_path / "ro").mkdir(mode=0o500)
    db = f"sqlite:///{tmp_path / 'missing' / 'a.sqlite'}"
    _service_env(monkeypatch, db, 0)
    assert service_module.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamlit-hub-audit: cannot use the audit store sqlite:///")
    assert "(STREAMLIT_HUB_AUDIT_DB_URL): OperationalError" in err and err.count("\n") == 1


def test_an_unreachable_postgresql_store_is_named_without_its_password(monkeypatch, capsys):
    import spawner.audit.service as service_module

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed
    _service_env(monkeypatch, f"postgresql+psycopg://audit:s3cr3t-pw@127.0.0.1:{port}/audit", 0)
    assert service_module.main([]) == 2
    err = capsys.readouterr().err
    assert (
        f"cannot use the audit store postgresql+psycopg://audit:***@127.0.0.1:{port}/audit" in err
    )
    assert "s3cr3t-pw" not in err and err.count("\n") == 1
