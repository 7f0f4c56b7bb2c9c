"""Two tests of the client: one closes its handle, one leaves a connection open."""

from client import get_json, get_json_cached


def test_get_json(api_url: str) -> None:
    assert get_json(f"{api_url}/items") == [1, 2, 3]


def test_get_json_cached(api_url: str) -> None:
    assert get_json_cached(api_url, "/items") == [1, 2, 3]
