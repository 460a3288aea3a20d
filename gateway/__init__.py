"""API-key authentication gateway: an ASGI reverse proxy over a hashed, cached key store."""
