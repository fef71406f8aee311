"""workbench.core must import with Qt and pyqtgraph unavailable."""

import subprocess
import sys

from tests.helpers import REPO

BLOCK_AND_IMPORT = """
import importlib, pkgutil, sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'pyqtgraph', 'PyQt5', 'PyQt6'):
            raise ImportError(f'{name} is blocked in this test')
        return None

sys.meta_path.insert(0, Blocker())
import workbench.core
names = [m.name for m in pkgutil.walk_packages(workbench.core.__path__, 'workbench.core.')]
for name in names:
    importlib.import_module(name)
import workbench.cli
loaded = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')]
assert not loaded, loaded
print(len(names))
"""


def test_core_imports_without_qt():
    result = subprocess.run([sys.executable, "-c", BLOCK_AND_IMPORT], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10
