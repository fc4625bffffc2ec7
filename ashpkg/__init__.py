"""What the native packages (debian/, ashpkg/arch, ashpkg/rpm) build besides the Python code:
manual pages and shell completions, generated from ashctl's parser and the config code.

Not installed: run from the source tree at build time, `python3 -m ashpkg OUTDIR`.
"""
