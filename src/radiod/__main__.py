import sys

from radiod.cli import main

sys.exit(main())
