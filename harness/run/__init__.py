"""The run: a Session (one ready guest with the port inside) and the `llama98-harness run` command built on it."""
