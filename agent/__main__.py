import sys

from edgefarm.agent.cli import main

sys.exit(main())
