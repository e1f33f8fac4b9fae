"""``python -m sftprep`` and the ``sftprep`` console script.

Signal handling starts here, before the heavy imports (numpy, pyarrow,
tokenizers), so that Ctrl-C or SIGTERM during start-up ends quietly with the
documented exit code instead of a traceback.
"""

import signal
import sys

# errors.py is plain Python (no imports of its own): the exit codes come from their one home.
from sftprep.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated


def _terminate(signum, frame):
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from sftprep.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("sftprep: interrupted; nothing was written\n")
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.stderr.write("sftprep: terminated; nothing was written\n")
        sys.exit(EXIT_TERMINATED)
    cli_main()


if __name__ == "__main__":
    main()
