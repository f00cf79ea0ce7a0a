"""Allow ``python -m magsync``."""

from magsync.cli import main

if __name__ == "__main__":
    main()
