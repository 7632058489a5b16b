import sys

from dynprune.cli import main

sys.exit(main())
