"""The sub-commands of `llama98-harness`, one module per capability: the top layer, which parses arguments and
calls the packages below (nothing below imports a command module)."""
