"""``python -m sftprep`` and the ``sftprep`` console script.

Signal handling starts here, before the heavy imports (numpy, pyarrow,
tokenizers), so that Ctrl-C or SIGTERM during start-up ends quietly with the
documented exit code instead of a traceback.
"""

import signal
import sys


class _Terminated(BaseException):
    pass


def _terminate(signum, frame):
    raise _Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from sftprep.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("sftprep: interrupted; nothing was written\n")
        sys.exit(130)
    except _Terminated:
        sys.stderr.write("sftprep: terminated; nothing was written\n")
        sys.exit(143)
    cli_main()


if __name__ == "__main__":
    main()
