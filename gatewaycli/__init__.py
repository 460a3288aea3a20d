"""The composition: the ``gateway`` command (init, serve, demo, keys, ...), the process layout and
the demo's echo upstream. The only package that knows both the data plane (``gateway``) and the
control plane (``admin``)."""
