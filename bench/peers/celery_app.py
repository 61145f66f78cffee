"""The Celery side of `npm run bench:peers`: one task, echo, over the Redis broker and result
backend at $SKEIN_BENCH_REDIS_URL (a loopback redis-server that bench/peers.ts started).
The worker runs it as `python3 -m celery -A celery_app worker --pool solo`."""
import os

from celery import Celery

URL = os.environ['SKEIN_BENCH_REDIS_URL']
app = Celery('skein_bench', broker=URL, backend=URL)
app.conf.update(
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    worker_prefetch_multiplier=64,
    broker_connection_retry_on_startup=True,
    task_ignore_result=False,
)


@app.task(name='echo')
def echo(value):
    return value
