"""``python -m edgekit``: the ``edgekit`` command (for environments without the console script)."""

from edgekit.cli import main

if __name__ == "__main__":
    main()
