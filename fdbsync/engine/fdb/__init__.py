"""The FoundationDB engine (`fdb://`): the engine API over the official bindings.

Importing it loads nothing: the client library is loaded when an engine opens.
"""
