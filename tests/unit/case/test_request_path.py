"""A command's fingerprint names the request's path as Starlette's URL gives it, whether it
is read off the scope (a plain path) or off the URL (anything else)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from services.case.entrypoints.http import _request_path

CASE = "6f0a3c1e-8a36-4c4b-9d7e-0a4b5f3f1c11"


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/cases/{CASE}/worksheets",
        "/v1/cases",
        f"/v1/cases/{CASE}/goals/x%2Fy/status",
        "/v1/cases/a:b@c;d=e,f+g!h$i&j'k(l)m*n~o",
        "//v1/cases",
        "/v1/cases/ trailing ",
        "/v1/cases/a\\b",
        "/v1/cases/a?b#c",
        "/v1/cases/åäö",
        "/v1/cases/\tx",
    ],
)
@pytest.mark.parametrize("host", [b"bench", b"case.example:8443", None])
def test_the_path_is_the_urls_path(path: str, host: bytes | None) -> None:
    headers = [(b"host", host)] if host is not None else []
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": headers,
        "query_string": b"",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
    }

    assert _request_path(Request(scope)) == Request(scope).url.path
