"""`python -m tpuplan`: the `plan` command."""

from tpuplan.cli import main

main()
