"""The API's routers, one module per entity (FastAPI full-stack template's ``api/routes``)."""
