"""The two host questions, which differ exactly at 0.0.0.0 (they used to be answered four ways)."""

import pytest

from weighbridge.core.net import binds_loopback_only, url_is_this_machine


@pytest.mark.parametrize("url,here", [("http://127.0.0.1:8000/v1", True), ("http://localhost/v1", True),
                                      ("http://[::1]:8000/v1", True), ("http://0.0.0.0:8000/v1", True),
                                      ("http://127.9.9.9/v1", True), ("http://10.0.0.5:8000/v1", False),
                                      ("https://api.example.com/v1", False), (None, True)])
def test_which_urls_stay_on_this_machine(url, here):
    assert url_is_this_machine(url) is here


@pytest.mark.parametrize("host,only", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                       ("0.0.0.0", False), ("::", False), ("192.168.1.2", False), ("example", False)])
def test_which_binds_reach_only_loopback(host, only):
    assert binds_loopback_only(host) is only
