"""Judging a run: teacher-forced verify of a report against the oracle, the token-level verdict on our port's
runs and the text-level verdict on anyone's llama2.c-family binary.

The oracle only computes (logits, generations); deciding whether a port's output is right is this package's job,
and so is writing an oracle run as a port's `-r` report (verify.oracle_report_text), the form verify reads."""
