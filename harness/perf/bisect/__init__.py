"""Find the commit that made the port slower: `git bisect run` driven by a measuring step command.

Git does the bisection (no engine of our own); we supply the step (`llama98-harness bisect-step`), which builds
the port at the checked-out commit, measures it and exits 0 (good), 1 (bad) or 125 (skip: does not build, or
the port crashes), comparing with the measurement at --good.

The user's repository is never touched: everything happens in a temporary `git clone --shared --no-checkout`
(it borrows the repository's objects read-only through alternates, so it costs no copy), which has its own HEAD,
index, working tree and bisect state. Nothing is written into the user's .git (a `git worktree` would add an
entry there, and one left behind by a killed run would show in `git worktree list`). The clone is deleted on
success, failure and Ctrl-C, and the `git bisect run` process group is stopped first.

Deterministic metrics (host-ipt, guest-ipt) are measured once per build and cached by the build's key (sources,
makefile, compiler) plus what was measured, so commits that do not change the port cost nothing. `tok_s` is the
program's own figure, taken on the guest's -icount clock (deterministic: guest time follows instructions); with
--wall-clock it is noisy, and a commit is sampled alongside --good until the ranges separate, or skipped.
"""

from harness.perf.bisect.measuring import slower_by, tok_s_decision
from harness.perf.bisect.report import print_outcome
from harness.perf.bisect.runner import bisect
from harness.perf.bisect.state import BisectError, BisectOutcome, max_steps

__all__ = ["BisectError", "BisectOutcome", "bisect", "max_steps", "print_outcome",
           "slower_by", "tok_s_decision"]
