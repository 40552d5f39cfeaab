"""The example app served by `make run`."""
