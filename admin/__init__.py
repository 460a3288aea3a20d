"""The admin side: key management service, and its REST API and console."""
