import sys

from droptune_client.cli import main

sys.exit(main())
