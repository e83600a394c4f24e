"""The standing attack suite: each test plays a hostile app, analyst or viewer and shows the
attack refused, against a real hub, the real proxy and real app servers."""
