"""Ray Serve deployments and FastAPI routers: parse, call a service, answer."""
