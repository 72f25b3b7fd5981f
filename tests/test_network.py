import pytest

from interp_lib import network


def test_answering_server_is_reachable(http_server):
    assert network.reachable(http_server.url, timeout=2)
    assert http_server.hits == 1


def test_error_status_still_counts_as_reachable(http_server):
    http_server.status = 404
    assert network.reachable(http_server.url + "/missing", timeout=2)


def test_refused_connection_is_unreachable(closed_url):
    assert not network.reachable(closed_url, timeout=2)


def test_stalled_server_gives_up_and_answers_false(silent_server):
    # The server accepts the connection and never answers: the bounded wait must give up.
    assert not network.reachable(silent_server, timeout=0.3)


def test_answers_are_cached_per_url(http_server):
    assert network.reachable(http_server.url)
    assert network.reachable(http_server.url)
    assert http_server.hits == 1
    assert network.reachable(http_server.url, use_cache=False)
    assert http_server.hits == 2


def test_interp_offline_short_circuits(monkeypatch, http_server):
    monkeypatch.setenv("INTERP_OFFLINE", "1")
    assert not network.reachable(http_server.url)
    assert http_server.hits == 0


def test_hub_respects_hf_endpoint_and_hf_hub_offline(monkeypatch, http_server):
    monkeypatch.setenv("HF_ENDPOINT", http_server.url + "/")
    assert network.hub_endpoint() == http_server.url
    assert network.hub_reachable()
    network.clear_cache()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not network.hub_reachable()


def test_cdn_probe_uses_its_own_url(monkeypatch, http_server, closed_url):
    monkeypatch.setenv("INTERP_CDN_URL", http_server.url)
    assert network.cdn_reachable()
    monkeypatch.setenv("INTERP_CDN_URL", closed_url)
    assert not network.cdn_reachable()


@pytest.mark.parametrize("url", ["huggingface.co", "ftp://x", 3])
def test_rejects_non_http_urls(url):
    with pytest.raises(ValueError, match="http"):
        network.reachable(url)


def test_rejects_non_positive_timeout(http_server):
    with pytest.raises(ValueError, match="timeout"):
        network.reachable(http_server.url, timeout=0)
