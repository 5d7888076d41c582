import sys

from runrecord.cli import main

sys.exit(main())
