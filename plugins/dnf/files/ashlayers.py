# ashlayers: every dnf (dnf4) transaction leaves a named, read-only snapshot layer.
# Installed by `ashctl setup`; the plugin lives in the ashplugins.dnf package. Once ashlayers
# is uninstalled this file defines no plugin (dnf goes on as if it were not here).
import contextlib
import sys

# Where `ashctl setup` found the package (after dnf's own folders: nothing of dnf's shadowed).
sys.path += [p for p in ["@ASH_PYTHONPATH@"] if p and p not in sys.path]
with contextlib.suppress(ImportError):
    from ashplugins.dnf.dnf4 import AshLayers  # noqa: F401
