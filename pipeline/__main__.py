import sys

from pipeline.launcher import main

sys.exit(main())
