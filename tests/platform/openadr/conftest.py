"""What the OpenADR VTN tests share: a demo platform, OpenADR tokens, and the spec's validator.

:class:`Vtn` wraps :func:`tests.platform.test_api_common.api_platform` (the demo on case33bw at
the fixed clock ``NOW``) with

- ``token(name, scope=None)``: a bearer header from the VTN's own ``POST /auth/token``;
- ``get`` / ``post`` / ``put`` / ``delete`` under :data:`OPENADR_PREFIX`, each response validated
  against the OpenADR 3.1.0 OpenAPI document (openapi-core; the document as
  :func:`transactive.platform.openadr.load_spec` corrects it, server base set), success and
  error alike: a response the document does not allow fails the test;
- ``problem(response)``: the body checked against the document's ``problem`` schema (for
  answers on paths or methods the document has no operation for).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

from tests.platform.test_api_common import ApiPlatform, api_platform
from transactive.platform.openadr import OPENADR_PREFIX, load_spec

HOST = "http://testserver"
SPEC = load_spec(f"{HOST}{OPENADR_PREFIX}")
VALIDATOR = OpenAPI.from_dict(SPEC)
PROBLEM = OAS30Validator(
    {**SPEC["components"]["schemas"]["problem"], "required": ["title", "status", "detail"]}
)


def validate(method: str, url: str, response: Any) -> None:
    """Fail unless the response is one the OpenADR document allows for this operation."""
    parts = urlsplit(url)
    request = MockRequest(
        HOST,
        method.lower(),
        parts.path,
        args=dict(parse_qsl(parts.query)),
        content_type=response.request.headers.get("content-type", "application/json"),
    )
    media = response.headers.get("content-type", "").split(";")[0]
    if media == "application/problem+json":  # the document declares application/json
        media = "application/json"
    mock = MockResponse(response.content, status_code=response.status_code, content_type=media)
    VALIDATOR.validate_response(request, mock)


@dataclass
class Vtn:
    """A demo platform and its VTN."""

    api: ApiPlatform
    tokens: dict[tuple[str, str | None], dict[str, str]] = field(default_factory=dict)

    def token(self, name: str, scope: str | None = None) -> dict[str, str]:
        key = (name, scope)
        if key not in self.tokens:
            member = self.api.demo.member(name)
            data = {
                "grant_type": "client_credentials",
                "client_id": member.client_id,
                "client_secret": member.client_secret,
            }
            if scope is not None:
                data["scope"] = scope
            r = self.request("POST", "/auth/token", data=data)
            assert r.status_code == 200, r.text
            self.tokens[key] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return self.tokens[key]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{OPENADR_PREFIX}{path}"
        response = self.api.client.request(method, url, **kwargs)
        validate(method, url, response)
        return response

    def get(self, path: str, as_: str | None = None, **kwargs: Any) -> Any:
        headers = {**(self.token(as_) if as_ else {}), **kwargs.pop("headers", {})}
        return self.request("GET", path, headers=headers, **kwargs)

    def post(self, path: str, as_: str | None = None, **kwargs: Any) -> Any:
        headers = {**(self.token(as_) if as_ else {}), **kwargs.pop("headers", {})}
        return self.request("POST", path, headers=headers, **kwargs)

    def put(self, path: str, as_: str | None = None, **kwargs: Any) -> Any:
        headers = {**(self.token(as_) if as_ else {}), **kwargs.pop("headers", {})}
        return self.request("PUT", path, headers=headers, **kwargs)

    def delete(self, path: str, as_: str | None = None, **kwargs: Any) -> Any:
        headers = {**(self.token(as_) if as_ else {}), **kwargs.pop("headers", {})}
        return self.request("DELETE", path, headers=headers, **kwargs)


def problem(response: Any) -> dict[str, Any]:
    """The response's RFC 7807 body, checked against the document's ``problem`` schema."""
    assert response.headers["content-type"].startswith("application/problem+json"), response
    body: dict[str, Any] = json.loads(response.content)
    PROBLEM.validate(body)
    assert body["status"] == response.status_code
    return body


@pytest.fixture
def vtn(tmp_path: Any) -> Iterator[Vtn]:
    platform = api_platform(f"sqlite:///{tmp_path / 'vtn.db'}")
    with platform.client:
        yield Vtn(platform)
