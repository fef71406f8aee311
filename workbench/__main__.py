"""Entry point for ``gan-workbench`` and ``python -m workbench``."""

import sys


def main(argv=None):
    from workbench.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
