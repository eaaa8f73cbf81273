"""Host-side tools for the llama98 port: generated tables, file writers and exporters."""
