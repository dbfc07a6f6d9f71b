import sys

from atelier_cli.main import main

sys.exit(main())
