"""Copy resources/ into wheels as workbench/_resources (metadata lives in pyproject.toml).

``package-data`` cannot reach a folder outside the package, and a symlink
breaks on Windows and in sdists, so ``build_py`` copies the files.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("icons/**/*.png", "icons/**/*.svg", "*.desktop", "*.metainfo.xml")


class BuildPyWithResources(build_py):
    """Copy resources/ into the wheel as workbench/_resources."""

    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "resources"
        target = Path(self.build_lib) / "workbench" / "_resources"
        for pattern in SHIPPED:
            for path in source.glob(pattern):
                destination = target / path.relative_to(source)
                self.mkpath(str(destination.parent))
                self.copy_file(str(path), str(destination))


setup(cmdclass={"build_py": BuildPyWithResources})
