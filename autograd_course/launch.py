"""Start a process of this package's own code: the very files this process imported, whatever the environment.

nbgrader imports the grader from the course root when it runs there (it puts the working folder on sys.path),
while the environment may have been installed from another checkout, or as a wheel. A helper process started
with ``python -m autograd_course...`` would then run different code without a word. Here the new interpreter
loads the package from the folder this one imported it from, by path, and puts nothing else on sys.path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

_BOOTSTRAP = """\
import importlib.util, sys
package_dir, module, *args = sys.argv[1:]
spec = importlib.util.spec_from_file_location(
    "autograd_course", package_dir + "/__init__.py", submodule_search_locations=[package_dir])
package = importlib.util.module_from_spec(spec)
sys.modules["autograd_course"] = package
spec.loader.exec_module(package)
importlib.import_module(module).main(args)
"""


def python_command(module: str, args: Sequence[object], package_dir: str | Path = PACKAGE_DIR) -> list[str]:
    """The command that runs ``module.main(args)`` from ``package_dir`` (where the package is, as the new
    process sees it: a sandbox mounts it elsewhere). -E ignores PYTHON* variables; -P keeps the working folder
    off sys.path. Each of ``args`` is passed as its str()."""
    return [sys.executable, "-E", "-P", "-c", _BOOTSTRAP, str(package_dir), module, *map(str, args)]
