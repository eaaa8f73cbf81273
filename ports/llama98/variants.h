/* variants.h - the test-only build variants of llama98, in one place.
 *
 * Real builds define none of these.  The harness builds a variant by
 * passing -D flags (harness/port/build.py: build_port(..., defines=...),
 * which the makefiles receive as DEFINES=; the names are in
 * tests/foreign_helpers.py), so its text-level tests can meet programs that
 * behave like the field's llama2.c forks without shipping one.  Every file
 * that tests a variant includes this header, which documents it and gives
 * its default.
 *
 * LLAMA98_FORK_STYLE (defined or not; llama98.c and report.c)
 *     Builds the port the way the field's llama2.c forks behave: llama2.c's
 *     flags only (-r, -c and -M are refused with llama2.c's usage text, as
 *     llama2.c refuses any unknown flag), no report header string in the
 *     binary, and chatter around the generated text like the Windows 98
 *     forks print (a banner with the config before it, a goodbye line
 *     after).  Used by the foreign-binary tests (FORK_STYLE in
 *     tests/foreign_helpers.py: tests of the foreign binaries and
 *     tests/e2e/test_foreign_runs.py, whose fork repository also compiles
 *     the sources with it), which check that the harness runs and judges
 *     such a program by its text alone.
 *
 * LLAMA98_ROPE_BASE (a float constant; header.c)
 *     The RoPE base of llama2.c's models (legacy v0 and ak42 files; an
 *     L98M version 3 header carries its own rope_theta, which wins).
 *     Default 10000.0f.  Overridden only to build a deliberately wrong
 *     binary (WRONG_ROPE in tests/foreign_helpers.py: the fork style with
 *     LLAMA98_ROPE_BASE=5000.0f), whose text diverges from the oracle's
 *     after a while, so the tests prove the judge names where it diverges.
 */
#ifndef LLAMA98_VARIANTS_H
#define LLAMA98_VARIANTS_H

#ifndef LLAMA98_ROPE_BASE
#define LLAMA98_ROPE_BASE 10000.0f
#endif

#endif
