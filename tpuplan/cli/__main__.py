"""`python -m tpuplan.cli`: the `plan` command."""

from tpuplan.cli import main

main()
