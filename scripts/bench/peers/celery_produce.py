"""Enqueues the fan-out as a Celery user would: one `exec_flow.delay(id)` per contact.

Usage: python celery_produce.py N FIRST_ID   (environment as for celery_app.py)
"""

import sys
import time

from celery_app import exec_flow


def main():
    n, first = int(sys.argv[1]), int(sys.argv[2])
    started = time.monotonic()
    for i in range(n):
        exec_flow.delay(first + i)
    print(f"celery_produce: {n} messages in {time.monotonic() - started:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
