"""The OpenADR 3.1.0 OpenAPI document, read with the three corrections it needs to be usable.

(Read as JSON reads it: YAML's unquoted timestamps in the examples become strings.)

The document (``openadr3-3.1.0.yaml``, OpenADR Alliance, Apache 2.0) is kept as published. As
published it is not a valid OpenAPI 3.0 document, and one of its response schemas can match no
object; :func:`load_spec` corrects both in the copy it returns, and says so here:

1. ``components.schemas.BlVenRequest.properties.targets.default`` reads ``'null          -'``
   (a stray ``-`` after ``null`` in the YAML), a string where an array is declared; the
   validator refuses the document. Corrected to ``null``, what the neighbouring fields have.
2. ``components.schemas.ven`` is ``allOf [objectMetadata, BlVenRequest]``: ``objectMetadata``
   says ``objectType`` is one of ``PROGRAM, EVENT, ... VEN``, ``BlVenRequest`` that it is
   ``BL_VEN_REQUEST``; no value is both. The VTN answers ``"VEN"`` (the object's type, as for
   every other object and as the ``openadr3`` client reads it), so the copy's ``ven`` (and
   ``resource``, which has the same clash with ``BlResourceRequest``) takes the request schema
   without its ``objectType``.
3. ``programRequest.properties.payloadDescriptors.items`` discriminates on ``objectType``
   without a ``mapping``, so (OpenAPI 3.0.3 §4.7.25.1) the value names the schema:
   ``EVENT_PAYLOAD_DESCRIPTOR`` would have to be a schema of that name, and none is. The copy
   maps the two values to ``eventPayloadDescriptor`` and ``reportPayloadDescriptor``, the
   schemas whose ``objectType`` enums they are.
"""

from __future__ import annotations

import copy
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["SPEC_PATH", "load_spec"]

SPEC_PATH = Path(__file__).with_name("openadr3-3.1.0.yaml")


@cache
def _published() -> dict[str, Any]:
    import yaml  # noqa: PLC0415 (only the tests and tools read the document)

    with SPEC_PATH.open(encoding="utf-8") as f:
        spec: dict[str, Any] = _json_values(yaml.safe_load(f))
    return spec


def _json_values(value: Any) -> Any:
    """The YAML as the JSON it stands for: its unquoted timestamps (the examples') as text.

    YAML reads ``2023-06-15T09:30:00Z`` as a datetime; an OpenAPI document is JSON, where it is a
    string (a generated request that reuses the example must be JSON-encodable).
    """
    if isinstance(value, dict):
        return {k: _json_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_values(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _without_object_type(schema: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    out["properties"].pop("objectType", None)
    out["required"] = [r for r in out.get("required", []) if r != "objectType"]
    return out


def load_spec(server_url: str | None = None) -> dict[str, Any]:
    """The corrected document (a fresh copy); ``server_url`` replaces its ``servers``.

    Parameters
    ----------
    server_url : str, optional
        The VTN's base URL (``http://host:port/openadr3/3.1.0``) the paths are relative to.

    """
    spec = copy.deepcopy(_published())
    schemas = spec["components"]["schemas"]
    schemas["BlVenRequest"]["properties"]["targets"]["default"] = None
    for obj, request in (("ven", "BlVenRequest"), ("resource", "BlResourceRequest")):
        schemas[obj]["allOf"] = [
            {"$ref": "#/components/schemas/objectMetadata"},
            _without_object_type(schemas[request]),
        ]
    items = schemas["programRequest"]["properties"]["payloadDescriptors"]["items"]
    items["discriminator"]["mapping"] = {
        "EVENT_PAYLOAD_DESCRIPTOR": "#/components/schemas/eventPayloadDescriptor",
        "REPORT_PAYLOAD_DESCRIPTOR": "#/components/schemas/reportPayloadDescriptor",
    }
    if server_url is not None:
        spec["servers"] = [{"url": server_url}]
    return spec
