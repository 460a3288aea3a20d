"""The admin side: key management service, and (issue #3) its REST API and console."""
