"""``hub bench ingest``'s step figures: a worker's step histogram scraped over HTTP, as a real
fusion worker serves it (its own registry, ``hub fusion run``'s server), and the mean per batch
between two scrapes."""

from __future__ import annotations

from prometheus_client import start_http_server

from hub.bench.steps import mean_ms, scrape_or_none, scrape_steps
from hub.fusion.metrics import FusionMetrics
from hub.stack.broker import free_port


def test_steps_are_scraped_and_averaged_per_batch() -> None:
    metrics = FusionMetrics()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        for seconds in (0.2, 0.4):
            metrics.step_seconds.labels("insert").observe(seconds)
        metrics.step_seconds.labels("risk").observe(0.03)
        before = scrape_steps(port)
        seconds_summed, batches = before["insert"]
        assert batches == 2.0 and abs(seconds_summed - 0.6) < 1e-9
        metrics.step_seconds.labels("insert").observe(0.1)
        after = scrape_steps(port)
    finally:
        server.shutdown()
        thread.join()
    # between the scrapes: one insert of 100 ms; risk did not run again
    assert mean_ms(before, after) == {"insert": 100.0}
    assert mean_ms({}, after) == {"insert": 233.3, "risk": 30.0}


def test_a_worker_that_does_not_answer_gives_no_figure() -> None:
    assert scrape_or_none(free_port()) is None
