"""The child process of `whisperfast bench --cold` (whisperfast/coldstart.py):
`python -m whisperfast.cli.cold_child REPORT <whisperfast arguments>` is the `whisperfast`
command itself, which at exit writes its kernel cache's counters to REPORT."""

import atexit
import sys

from .. import coldstart

if __name__ == "__main__":
    atexit.register(coldstart.write_report, sys.argv.pop(1))
    from . import main

    main()  # the command as installed (cli.main, its early warm-up included): its handlers, this one too, run before it ends
