"""The fan-out job as a Celery user would write it: one task per contact, each making one
HTTP call (`PUT /contacts/{id}/execFlow`) to Huggy with requests, one queue message per
contact on RabbitMQ. Run by `tarefas-bench peers` (crates/tarefas-bench/src/peers.rs):

    celery -A celery_app worker --pool prefork --concurrency 8 -Q tarefas-bench-fanout
    python celery_produce.py N FIRST_ID

Configured from the environment: BENCH_AMQP_URL (a vhost of the benchmark's own),
BENCH_HUGGY_URL, BENCH_HUGGY_TOKEN, BENCH_CHANNEL, BENCH_QUEUE.
"""

import os

import requests
from celery import Celery

QUEUE = os.environ.get("BENCH_QUEUE", "tarefas-bench-fanout")

app = Celery("tarefas_bench_peer", broker=os.environ["BENCH_AMQP_URL"])
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,  # no result backend: the call is the result
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

HUGGY = os.environ["BENCH_HUGGY_URL"]
HEADERS = {"Authorization": "Bearer " + os.environ["BENCH_HUGGY_TOKEN"]}
BODY = {
    "uuid": os.environ["BENCH_CHANNEL"],
    "flowId": 42,
    "variables": {},
    "whenInChat": True,
    "whenWaitForChat": True,
    "whenInAuto": True,
}

# One keep-alive session per worker process (created after the prefork fork).
_session = None


def session():
    global _session
    if _session is None:
        _session = requests.Session()
    return _session


@app.task(name="exec_flow", max_retries=3, default_retry_delay=1)
def exec_flow(contact_id):
    r = session().put(f"{HUGGY}/contacts/{contact_id}/execFlow", json=BODY, headers=HEADERS, timeout=30)
    r.raise_for_status()
    return None
