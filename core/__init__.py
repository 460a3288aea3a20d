"""The core both planes build on: the key format, the configuration, the store and its change feed,
the identity of a verified key and the JSON error vocabulary."""
