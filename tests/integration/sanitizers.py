"""The server's sanitizer findings, for the integration suites."""
import re

# What ASan and UBSan write when they find something (UBSan goes on running)
SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ")


def sanitizer_reports(srv):
    """The lines of a test_head.Server's log where the sanitizers reported."""
    if not srv.log.closed:
        srv.log.flush()
    with open(srv.log_path, errors="replace") as f:
        return [line for line in f if SANITIZER.search(line)]
