import sys

from rlvt_own_packages import problems

# before the launcher imports `schemas` and `transforms`: a foreign package of the same name (a
# folder in the working directory, another distribution) must give this message, not an ImportError
if clashes := problems():
    for problem in clashes:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)

from pipeline.launcher import main  # noqa: E402

sys.exit(main())
