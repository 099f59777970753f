import sys

from edgefarm.controller.cli import main

sys.exit(main())
