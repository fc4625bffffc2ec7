# ashlayers: every dnf (dnf4) transaction leaves a named, read-only snapshot layer.
# Installed by `ashctl setup`; the plugin lives in the ashplugins.dnf package.
from ashplugins.dnf.dnf4 import AshLayers  # noqa: F401
