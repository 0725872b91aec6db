import sys

from genopt.cli import main

sys.exit(main())
