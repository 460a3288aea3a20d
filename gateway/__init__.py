"""The data plane: routing, headers, the verifier and the upstream client, as a raw ASGI app.

Builds on ``core`` only; it never imports the control plane (``admin``)."""
