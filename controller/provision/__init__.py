"""Putting the agent on a board over SSH, as a service, with the farm CA's TLS material."""
