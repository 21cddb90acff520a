import sys

from servers.launcher import main

sys.exit(main())
