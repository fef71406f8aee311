"""Entry script of the PyInstaller bundle: the same main() as ``gan-workbench``."""

import multiprocessing
import sys

from workbench.__main__ import main

if __name__ == "__main__":
    # DataLoader worker processes that are spawned instead of forked (the
    # default on Windows and macOS) re-run this executable and need this call.
    multiprocessing.freeze_support()
    sys.exit(main())
