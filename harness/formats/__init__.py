"""File formats that both the oracle and the port's side of the harness read or write: the port's `-r` run
report, split checkpoints (MODEL.BIN + MODEL.Bnn parts), the checkpoint header types and the L98M layout.

They live below both sides so that neither has to import the other to agree on a byte layout."""
