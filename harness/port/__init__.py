"""The llama98 port seen from the host: building it, the models it runs (fixtures, generated shapes, quantized
files), its run report, and judging a run against the oracle."""
