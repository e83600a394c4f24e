"""jupyterhub-streamlit: host analysts' Streamlit apps as JupyterHub named servers.

Layout of the package (tests/unit/test_layout.py checks that every module is listed):

- ``settings``       the platform's settings: documented traitlets, the environment as default
- ``hubconfig``      ``configure(c)``: the hub configuration, called from ``hub_config/``
- ``startup``        ``configure_or_exit(c)``: a wrong setting is one sentence; a hub stopped
                     while starting leaves no process behind
- ``names``          pure validation of app names and entry paths (shared by every spawner)
- ``options``        pure parsing of ``user_options`` (REST body or form) into ``AppOptions``
- ``policy``         the group policy: loading, validation and start/share decisions (pure)
- ``quota``          the policy at the hub: the named-server limit, the quota API and line
- ``sharing``        the policy's link rules on JupyterHub's share-codes API; consent once
                     per viewer and app; the pending page for viewers
- ``routes``         the hub routes the named-server limit and the audit recorder recognise
- ``mixin``          what every Streamlit spawner shares (options, checks, progress, environment)
- ``command``        the app server's command (``app_command``) for both spawners
- ``local``          ``streamlit-local``: one local process per app
- ``unix_users``     one system account per analyst for local apps
- ``kube``           ``streamlit-kube``: one pod per app (a KubeSpawner subclass)
- ``hub_host``       sign-in only on the hub's own host
- ``activity_guard`` an app server's token posts activity only for its own app
- ``app_output``     the app output and status APIs (an owner's view of a failing app)
- ``app_secrets``    app secrets: name rules, the encrypted store (hub-held key), delivery to
                     a starting app (the local pipe, the pod's credentials Secret)
- ``app_secrets_api`` the app secrets API on the hub (list names, set, delete; owners, admins)
- ``cli_secrets``    ``streamlit-hub secrets``: an app's secrets from the command line
- ``client_address`` the client address the audit trail records (trusted proxies)
- ``culling``        idle culling with the policy's timeouts
- ``metrics``        the hub side's Prometheus metrics
- ``viewer``         who is looking at a hub page, for templates
- ``demo``           demo users, groups and app for the embedded default
- ``utc``            one way to write a time
- ``bundles``        publishing: checked, content-addressed app folders
- ``versions``       publishing: an app's versions, one active
- ``environments``   publishing: per-app environments, a bundle's requirements.txt built with
                     uv over the platform's app environment
- ``publishing``     publishing wired together: deploy (check, build, record, activate) at the
                     hub; the version an app start runs, extracted for its app account
- ``publish_api``    the publishing REST API on the hub (versions, from git, activate, build
                     log)
- ``git_source``     publishing from git: URL and ref checks, a ref resolved to a commit and
                     that commit fetched by git in a clean environment (token as a header)
- ``bundle_api``     a version's bundle for its app pod (Kubernetes), the digest as ETag
- ``git_source``     publishing from git: a ref resolved to a commit and fetched, no token in
                     a URL, a log or an error
- ``cli``            ``streamlit-hub``: the analysts' command line (login, deploy, versions,
                     rollback, logs, open)
- ``share_names``    user and group names to suggest in the share dialog (only readable ones)
- ``app_server``     runs *inside* an app server: Streamlit behind hub OAuth
- ``audit``          the audit trail: events, store, delivery, the hub's recorder, the service
"""

__version__ = "0.1.0.dev0"
