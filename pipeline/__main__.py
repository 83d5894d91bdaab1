import logging
import os
import sys

from rlvt_own_packages import problems

# before the launcher imports `schemas` and `transforms`: a foreign package of the same name (a
# folder in the working directory, another distribution) must give this message, not an ImportError
if clashes := problems():
    for problem in clashes:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)

from pipeline import warm_workers  # noqa: E402

# the local runner's worker processes are imported while the launcher is (see pipeline.warm_workers)
if warm_workers.wanted(sys.argv[1:]):
    warm_workers.start()

from pipeline.launcher import main  # noqa: E402

code = main()
warm_workers.stop()
# Every output is written and closed by now (report, rows, counts; the workers have exited). What is
# left is the interpreter tearing down Beam, gRPC, pyarrow and polars object by object: half a second
# in which nothing happens for the user. Flush what is buffered and leave.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
