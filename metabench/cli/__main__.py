"""`python -m metabench.cli`: the same as the `metabench` command."""
import sys

from metabench.cli import main

sys.exit(main())
