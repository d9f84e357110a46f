"""The platform as an OpenADR 3.1 VTN (issue 15; Hu et al. 2019 §3.5 standard interfaces).

OpenADR 3.1.0, the OpenADR Alliance's REST API between a Virtual Top Node (the party that
publishes prices, here the platform) and Virtual End Nodes (the members' devices and tools). Its
OpenAPI document ships beside this module (``openadr3-3.1.0.yaml``, Apache 2.0, with its NOTICE).

:func:`install` adds the VTN's routes under :data:`OPENADR_PREFIX`
(:mod:`transactive.platform.openadr.routes`): markets as programs, their published clearing
prices as events per delivery day (:mod:`~transactive.platform.openadr.events`), VENs and usage
reports that become meter readings (:mod:`~transactive.platform.openadr.reports`), OAuth2
client-credential tokens with the specification's scopes
(:mod:`~transactive.platform.openadr.scopes`), and every refusal as an RFC 7807 problem
(:mod:`~transactive.platform.openadr.problems`).
:func:`load_spec` reads the OpenAPI document, with the corrections it needs to be usable
(:mod:`~transactive.platform.openadr.spec`).
"""

from __future__ import annotations

from fastapi import FastAPI

from transactive.platform.openadr.spec import SPEC_PATH, load_spec

__all__ = ["OPENADR_PREFIX", "SPEC_PATH", "install", "load_spec"]

#: Where the VTN's paths live: the specification's paths are relative to this base.
OPENADR_PREFIX = "/openadr3/3.1.0"


def install(app: FastAPI) -> None:
    """Add the OpenADR 3.1 VTN routes (and their problem-shaped refusals) to ``app``."""
    from transactive.platform.openadr.events import (  # noqa: PLC0415
        EventCache,
        PublicationTimes,
    )
    from transactive.platform.openadr.routes import router  # noqa: PLC0415
    from transactive.platform.openadr.scopes import ScopeCache  # noqa: PLC0415

    app.state.openadr_scopes = ScopeCache()
    app.state.openadr_times = PublicationTimes()
    app.state.openadr_events = EventCache()
    app.include_router(router, prefix=OPENADR_PREFIX)
