"""The audit trail's client address: the one the outermost trusted proxy saw, never a value
the client chose (spawner/client_address.py, shared by the hub and the app servers)."""

import time

import pytest

from spawner.client_address import (
    DEFAULT_TRUSTED_PROXIES,
    MAX_HOPS,
    client_address,
    configured_networks,
    networks_text,
    parse_address,
    parse_networks,
)

LOCAL = parse_networks(DEFAULT_TRUSTED_PROXIES)
# a cluster: the hub's proxy and an ingress controller in the pod network 10.0.0.0/8
CLUSTER = parse_networks("10.0.0.0/8")


# ---- the local proxy only (the default) ----------------------------------------------------


@pytest.mark.parametrize(
    "xff",
    [
        "6.6.6.6, 127.0.0.1",
        "6.6.6.6,127.0.0.1",
        "6.6.6.6, 10.0.0.1, 127.0.0.1",
        "127.0.0.1, 6.6.6.6, 127.0.0.1",
        "7.7.7.7 , 6.6.6.6 ,  127.0.0.1 ",
    ],
)
def test_a_local_client_cannot_choose_its_address_through_the_local_proxy(xff):
    # the client (on this machine) sent everything left of what the local proxy appended
    assert client_address("127.0.0.1", [xff], LOCAL) == "127.0.0.1"


def test_the_entry_the_local_proxy_appended_is_the_client():
    assert client_address("127.0.0.1", ["6.6.6.6, 203.0.113.9"], LOCAL) == "203.0.113.9"
    assert client_address("127.0.0.1", ["203.0.113.9"], LOCAL) == "203.0.113.9"


def test_no_header_means_the_peer():
    assert client_address("127.0.0.1", [], LOCAL) == "127.0.0.1"
    assert client_address("127.0.0.1", None, LOCAL) == "127.0.0.1"
    assert client_address("198.51.100.4", [], LOCAL) == "198.51.100.4"


def test_an_untrusted_peer_is_the_client_whatever_it_sends():
    for xff in (["6.6.6.6"], ["6.6.6.6, 127.0.0.1"], ["127.0.0.1"]):
        assert client_address("198.51.100.4", xff, LOCAL) == "198.51.100.4"
    # the cluster's proxy is not trusted by the default list
    assert client_address("10.0.0.7", ["6.6.6.6, 203.0.113.9"], LOCAL) == "10.0.0.7"


def test_nothing_trusted_means_always_the_peer():
    assert client_address("127.0.0.1", ["6.6.6.6, 203.0.113.9"], ()) == "127.0.0.1"


def test_loopback_is_trusted_only_as_the_peer_never_inside_the_chain():
    # a loopback entry means "a process on the proxy's own machine": a client, not a proxy
    trusted = parse_networks("127.0.0.0/8, ::1, 10.0.0.0/8")
    assert client_address("10.0.0.2", ["6.6.6.6, 127.0.0.1"], trusted) == "127.0.0.1"
    assert client_address("10.0.0.2", ["6.6.6.6, ::1"], trusted) == "::1"
    assert client_address("127.0.0.1", ["6.6.6.6, 127.0.0.5"], trusted) == "127.0.0.5"


# ---- more hops: a cluster with an ingress controller -----------------------------------------


def test_trusted_hops_are_walked_from_the_right():
    # ingress (10.1.0.5) saw the client 203.0.113.9; the hub's proxy (10.2.0.7) saw the ingress
    xff = ["6.6.6.6, 203.0.113.9, 10.1.0.5"]
    assert client_address("10.2.0.7", xff, CLUSTER) == "203.0.113.9"
    assert client_address("10.2.0.7", xff, LOCAL) == "10.2.0.7"


def test_several_header_lines_are_one_list_in_order():
    assert (
        client_address("10.2.0.7", ["6.6.6.6", "203.0.113.9", "10.1.0.5"], CLUSTER) == "203.0.113.9"
    )
    assert (
        client_address("10.2.0.7", ["6.6.6.6, 203.0.113.9", "10.1.0.5"], CLUSTER) == "203.0.113.9"
    )


def test_a_request_from_a_trusted_machine_itself_is_that_machine():
    assert client_address("10.2.0.7", ["10.1.0.5"], CLUSTER) == "10.1.0.5"


# ---- IPv6 and address forms ------------------------------------------------------------------


def test_ipv6_peer_and_entries():
    assert client_address("::1", ["6.6.6.6, 2001:db8::5"], LOCAL) == "2001:db8::5"
    assert client_address("::1", ["6.6.6.6, ::1"], LOCAL) == "::1"
    v6 = parse_networks("2001:db8:ffff::/48")
    assert (
        client_address("2001:db8:ffff::2", ["6.6.6.6, [2001:db8::7]:4711, 2001:db8:ffff::9"], v6)
        == "2001:db8::7"
    )
    assert client_address("2001:db8::1", ["6.6.6.6"], LOCAL) == "2001:db8::1"


def test_ipv4_mapped_addresses_are_the_ipv4_address():
    # a proxy on a dual-stack socket writes ::ffff:127.0.0.1 for an IPv4 client
    assert client_address("::ffff:127.0.0.1", ["6.6.6.6, ::ffff:127.0.0.1"], LOCAL) == "127.0.0.1"
    assert client_address("127.0.0.1", ["6.6.6.6, ::ffff:203.0.113.9"], LOCAL) == "203.0.113.9"


@pytest.mark.parametrize(
    "text, want",
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9 ", "203.0.113.9"),
        ("203.0.113.9:8080", "203.0.113.9"),
        ("2001:DB8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
    ],
)
def test_address_forms_proxies_write(text, want):
    assert str(parse_address(text)) == want


@pytest.mark.parametrize(
    "text",
    [
        "",
        "unknown",
        "_hidden",
        "example.com",
        "6.6.6.6.6",
        "1.2.3.4:port",
        "[2001:db8::7",
        "[::1]x",
        "256.1.1.1",
        "1.2.3.4/32",
        "2001:db8::7:80:1:2:3:4:5",
        "6.6.6.6 7.7.7.7",
        "\u0661.1.1.1",
        "1" * 100,
        None,
        "2001:db8::7]:80",
    ],
)
def test_garbage_is_not_an_address(text):
    assert parse_address(text) is None


# ---- garbage and size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["unknown", "", "garbage, ,", "6.6.6.6:x", "\xff\xfe", "a" * 500]
)
def test_garbage_where_a_trusted_proxy_wrote_gives_that_proxy_never_what_lies_beyond(written):
    assert client_address("127.0.0.1", [f"6.6.6.6, {written}"], LOCAL) == "127.0.0.1"
    assert client_address("10.2.0.7", [f"6.6.6.6, {written}, 10.1.0.5"], CLUSTER) == "10.1.0.5"


def test_a_garbage_peer_is_no_address():
    assert client_address(None, ["6.6.6.6"], LOCAL) is None
    assert client_address("", ["6.6.6.6"], LOCAL) is None
    assert client_address("not-an-ip", ["6.6.6.6"], LOCAL) is None


def test_the_walk_stops_after_max_hops_on_the_last_trusted_one():
    chain = ", ".join(f"10.9.0.{i}" for i in range(1, 200))
    got = client_address("10.2.0.7", [f"6.6.6.6, {chain}"], CLUSTER)
    assert got != "6.6.6.6"
    assert got == f"10.9.0.{199 - MAX_HOPS + 1}"


def test_a_huge_header_is_cheap_and_changes_nothing():
    huge = "6.6.6.6, " * 200_000 + "203.0.113.9"
    t0 = time.perf_counter()
    for _ in range(20):
        assert client_address("127.0.0.1", [huge], LOCAL) == "203.0.113.9"
        assert client_address("10.2.0.7", [huge, "10.1.0.5"], CLUSTER) == "203.0.113.9"
    assert time.perf_counter() - t0 < 1.0
    many_lines = ["6.6.6.6"] * 50_000 + ["127.0.0.1"]
    assert client_address("127.0.0.1", many_lines, LOCAL) == "127.0.0.1"


def test_results_are_short_canonical_text():
    got = client_address("127.0.0.1", ["[2001:DB8:0:0:0:0:0:7]:80"], LOCAL)
    assert got == "2001:db8::7" and len(got) <= 45


# ---- the setting -----------------------------------------------------------------------------


def test_the_default_trusts_only_loopback():
    assert networks_text(LOCAL) == "127.0.0.0/8,::1/128"


def test_networks_parse_from_text_or_lists():
    assert (
        networks_text(parse_networks(" 10.0.0.0/8 ,192.168.1.7  fd00::/8,"))
        == "10.0.0.0/8,192.168.1.7/32,fd00::/8"
    )
    assert networks_text(parse_networks(["10.0.0.0/8", "::1"])) == "10.0.0.0/8,::1/128"
    assert parse_networks("") == () and parse_networks([]) == ()
    assert networks_text(parse_networks("10.1.2.3/8")) == "10.0.0.0/8"  # host bits dropped


@pytest.mark.parametrize(
    "bad", ["10.0.0.0/33", "example.com", "10.0.0.0/8;", "1.2.3", "::1/129", "*"]
)
def test_a_bad_network_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="not an IP address or network"):
        parse_networks(f"127.0.0.1, {bad}")


def test_the_environment_variable_set_or_not():
    assert configured_networks({}) == LOCAL
    assert configured_networks({"STREAMLIT_HUB_TRUSTED_PROXIES": ""}) == ()
    assert (
        networks_text(configured_networks({"STREAMLIT_HUB_TRUSTED_PROXIES": "10.0.0.0/8"}))
        == "10.0.0.0/8"
    )
    with pytest.raises(ValueError, match="STREAMLIT_HUB_TRUSTED_PROXIES"):
        configured_networks({"STREAMLIT_HUB_TRUSTED_PROXIES": "10.0.0.0/8, nope"})
