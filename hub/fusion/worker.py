"""The fusion loop: poll a batch, decode, dedupe, assign, dead-letter, store, repeat.

Offsets are never committed to Kafka: they live in PostgreSQL next to the data they produced,
and on every partition assignment the consumer seeks to them (effectively-once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from geo.assign import CommunityIndex
from geo.grids import GridIndex
from hub.bus import kafka as bus
from hub.fusion.assign import CommunityResolver, GridResolver
from hub.fusion.changes import ChangeStage
from hub.fusion.decode import STORE_REJECTED, UNKNOWN_COMMUNITY, Reject, decode, drop_duplicates
from hub.fusion.dlq import DeadLetters
from hub.fusion.incident.cache import NeighbourhoodCache
from hub.fusion.incident.report_rows import EMPTY_REPORTS
from hub.fusion.incident.stage import IncidentStage
from hub.fusion.metrics import FusionMetrics
from hub.fusion.resources import ResourceStage
from hub.fusion.risk import RiskConfig
from hub.fusion.risk_stage import RiskStage
from hub.fusion.rules import Rules
from hub.fusion.sink import BatchCounts, PostgresSink, StoredOffset, partition_next_offsets
from hub.fusion.stages import Stage
from hub.fusion.thresholds import Thresholds
from hub.fusion.warnings import ThresholdStage, WarningFlagStage
from hub.fusion.writer import Writer
from hub.settings import Settings
from hub.store.communities import load_index
from hub.store.db import connect
from hub.store.grids import grid_version, load_grid_index

log = logging.getLogger(__name__)


class SeekToStoredOffsets(ConsumerRebalanceListener):
    """On assignment, resume each partition where PostgreSQL says the last batch ended.

    Runs on kafka-python's IO thread, where blocking client calls are forbidden: it only seeks
    (a local operation) and leaves the log-end / topic-id check to the polling thread.
    """

    def __init__(self, worker: FusionWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.writer.drain()
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.seek_assigned(list(assigned))


class FusionWorker:
    def __init__(self, settings: Settings, metrics: FusionMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or FusionMetrics()
        # autocommit: every ``conn.transaction()`` is then a real BEGIN/COMMIT, never a savepoint
        # inside an implicit transaction that some stray SELECT left open.
        self.conn = connect(settings, autocommit=True)
        # Loaded once: a bad rules file fails at start, and every batch uses the same rules.
        self.stages = build_stages(settings)
        self.reader = self._new_reader()
        self.sink = self._new_sink()
        self.resolver = CommunityResolver(
            lambda: _fresh_index(settings), on_snap=self.metrics.snapped.inc
        )
        self.grids = GridResolver(
            lambda: _fresh_grids(settings),
            lambda: _fresh_grid_version(settings),
            settings.grid_h3_resolution,
        )
        self.topic_id = bus.ensure_topics(settings).get(settings.events_topic)
        self.consumer: KafkaConsumer = bus.consumer(settings)
        self.dead = DeadLetters(bus.producer(settings, linger_ms=0), settings.dlq_topic)
        self.totals: Counter[str] = Counter()
        self._stop = threading.Event()
        self._to_check: dict[TopicPartition, StoredOffset] = {}
        self._refresh_topic_id = False
        self.writer = Writer()

    # -- partition assignment -------------------------------------------------------------
    def seek_assigned(self, assigned: list[TopicPartition]) -> None:
        self.writer.drain()  # the stored offsets must include every batch already polled
        stored = self.sink.load_offsets()
        for tp in assigned:
            offset = stored.get(tp.partition)
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset.next_offset)
                self._to_check[tp] = offset
        self._refresh_topic_id = True
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )

    def _restart_recreated(self, polled: dict[TopicPartition, list[Any]]) -> None:
        """Stored offsets beyond the log end, or of another topic id: the topic was recreated
        (the local broker keeps nothing across restarts). Restart those partitions from the
        beginning; event_id deduplication keeps the store exact.

        The log end is the high watermark of a fetch response: the local broker's ListOffsets
        answers the base offset of the last record batch, short of the real end.
        """
        if self._refresh_topic_id:
            self.topic_id = bus.topic_id(self.settings, self.settings.events_topic) or self.topic_id
            self._refresh_topic_id = False
        for tp, stored in list(self._to_check.items()):
            high = self.consumer.highwater(tp)
            if stored.topic_id not in (None, self.topic_id):
                why = "the topic id changed"
            elif high is None:
                continue  # no fetch answered yet for this partition
            elif stored.next_offset > high:
                why = "the stored offset is beyond the log end"
            else:
                del self._to_check[tp]
                continue
            del self._to_check[tp]
            log.warning(
                "topic recreated (%s): restarting partition from the beginning",
                why,
                extra={
                    "partition": tp.partition,
                    "stored_offset": stored.next_offset,
                    "log_end": high,
                    "stored_topic_id": stored.topic_id,
                    "topic_id": self.topic_id,
                },
            )
            self.metrics.topic_resets.inc()
            polled.pop(tp, None)  # records read from the stale position are not trusted
            self.consumer.seek_to_beginning(tp)

    # -- the loop ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Consume until ``stop()``; ``on_ready`` is called once partitions are assigned."""
        self.consumer.subscribe([self.settings.events_topic], listener=SeekToStoredOffsets(self))
        log.info(
            "fusion started",
            extra={"topic": self.settings.events_topic, "group": self.settings.consumer_group},
        )
        last_lag, backoff = 0.0, 0.5
        try:
            while not self._stop.is_set():
                try:
                    polled = self.consumer.poll(
                        timeout_ms=self.settings.fusion_poll_timeout_ms,
                        max_records=self.settings.fusion_max_poll_records,
                    )
                except KafkaError as exc:  # broker away: keep the worker, retry with backoff
                    log.warning(
                        "poll failed; retrying", extra={"error": repr(exc), "in_s": backoff}
                    )
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                if on_ready is not None and self.consumer.assignment():
                    on_ready()
                    on_ready = None
                self._handle(polled)
                self.writer.check()
                if time.monotonic() - last_lag > 2.0:
                    self._update_consumer_lag()
                    last_lag = time.monotonic()
        finally:
            self.close()

    def _handle(self, polled: dict[TopicPartition, list[Any]]) -> None:
        if self._to_check:
            self._restart_recreated(polled)
        records = [r for batch in polled.values() for r in batch]
        if records:
            self.process(records)

    def process(self, records: Sequence[Any]) -> None:
        """Fuse one polled batch: decode and dead-letter here, store on the writer thread."""
        started = time.monotonic()
        decoded = decode(records)
        frame, dup_in_batch = drop_duplicates(decoded.frame)
        good, unknown = self.resolver.resolve(frame)
        good = self.grids.assign(good)
        rejects = decoded.rejects + [
            Reject(int(i), UNKNOWN_COMMUNITY, _unknown_detail(cid, self.resolver.index.snap_m))
            for i, cid in zip(unknown["idx"], unknown["community_id"], strict=True)
        ]
        self._dead_letter(records, rejects)
        offsets = partition_next_offsets(
            (r.partition for r in records), (r.offset for r in records)
        )
        self.writer.submit(
            lambda: self._store(records, good, offsets, dup_in_batch, rejects, started)
        )

    def _store(
        self,
        records: Sequence[Any],
        good: Any,
        offsets: dict[int, int],
        dup_in_batch: int,
        rejects: list[Reject],
        started: float,
    ) -> None:
        try:
            stored = self._write(good, offsets, len(records), dup_in_batch, len(rejects))
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError):
            log.exception("batch write failed; isolating the rows PostgreSQL refuses")
            bad = self.sink.find_unstorable(good)
            if not bad:
                raise
            more = [Reject(i, STORE_REJECTED, err) for i, err in bad.items()]
            self._dead_letter(records, more)
            rejects = rejects + more
            good = good.filter(~good["idx"].is_in(list(bad)))
            stored = self._write(good, offsets, len(records), dup_in_batch, len(rejects))
        self._observe(records, good, stored, dup_in_batch, rejects, started)

    def _write(self, good: Any, offsets: dict[int, int], consumed: int, dup: int, dlq: int) -> int:
        """Store the batch; while the database is unreachable, wait and reconnect (never drop)."""
        counts = BatchCounts(consumed=consumed, duplicates_in_batch=dup, dlq=dlq)
        delay = 0.5
        while True:
            try:
                return self.sink.write(good, offsets, self.topic_id, counts)
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    raise
                log.warning(
                    "database unavailable; retrying", extra={"error": str(exc), "in_s": delay}
                )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                self._reconnect()

    def _new_sink(self) -> PostgresSink:
        s = self.settings
        return PostgresSink(self.conn, s.consumer_group, s.events_topic, self.stages, self.reader)

    def _new_reader(self) -> psycopg.Connection | None:
        """A second connection for the stages' plans (reads beside the insert), when there
        are stages."""
        return connect(self.settings, autocommit=True) if self.stages else None

    def _reconnect(self) -> None:
        self.sink.close()
        for conn in (self.conn, self.reader):
            with contextlib.suppress(psycopg.Error):
                if conn is not None:
                    conn.close()
        try:
            self.conn = connect(self.settings, autocommit=True)
            self.reader = self._new_reader()
            self.sink = self._new_sink()
        except psycopg.OperationalError:
            log.debug("reconnect failed", exc_info=True)

    def _dead_letter(self, records: Sequence[Any], rejects: list[Reject]) -> None:
        if not rejects:
            return
        for rej in rejects:
            self.dead.send(records[rej.index], rej.reason, rej.detail)
            self.metrics.dlq.labels(rej.reason).inc()
        self.dead.flush()  # before the offsets commit: a dead letter is never lost

    def _observe(
        self,
        records: Sequence[Any],
        good: Any,
        stored: int,
        dup_in_batch: int,
        rejects: list[Reject],
        started: float,
    ) -> None:
        m = self.metrics
        duplicates = dup_in_batch + good.height - stored
        m.consumed.inc(len(records))
        m.stored.inc(stored)
        m.duplicates.inc(duplicates)
        m.batch_size.observe(len(records))
        m.batch_seconds.observe(time.monotonic() - started)
        steps = self.sink.step_seconds
        for step, seconds in steps.items():
            m.step_seconds.labels(step).observe(seconds)
        now_ms = time.time() * 1000
        for lag_ms in (now_ms - good["sent_ms"].to_numpy()).tolist():
            m.ingest_lag.observe(max(lag_ms, 0.0) / 1000.0)
        self.totals.update(
            consumed=len(records), stored=stored, duplicates=duplicates, dlq=len(rejects)
        )
        log.debug(
            "batch stored",
            extra={
                "consumed": len(records),
                "stored": stored,
                "duplicates": duplicates,
                "dlq": len(rejects),
                "step_ms": {k: round(v * 1000, 1) for k, v in steps.items()},
            },
        )

    def _update_consumer_lag(self) -> None:
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                self.metrics.consumer_lag.labels(str(tp.partition)).set(
                    high - self.consumer.position(tp)
                )

    def close(self) -> None:
        closers = [self.writer.close, self.sink.close, self.consumer.close, self.dead.close]
        closers += [c.close for c in (self.conn, self.reader) if c is not None]
        for closer in closers:
            try:
                closer()
            except Exception:  # closing is best effort; the data is already committed
                log.debug("close failed", exc_info=True)


def build_stages(settings: Settings) -> list[Stage]:
    """The stages of the picture, in order (``hub.fusion.stages``); none when
    ``fusion_incidents`` is off (events only). Rules are loaded once: a bad file fails at
    start, and every batch uses the same rules."""
    if not settings.fusion_incidents:
        return []
    return [
        ThresholdStage(Thresholds.load(settings.thresholds)),
        IncidentStage(Rules.load(settings.correlation_rules), _cache(settings)),
        WarningFlagStage(settings.neighbour_distance_m),
        RiskStage(RiskConfig.load(settings.risk_rules)),
        ResourceStage(),
        ChangeStage(),  # last: records what the stages before it changed
    ]


def _cache(settings: Settings) -> NeighbourhoodCache | None:
    rows = settings.fusion_neighbourhood_cache_rows
    return NeighbourhoodCache(EMPTY_REPORTS, rows) if rows else None


def _fresh_index(settings: Settings) -> CommunityIndex:
    with connect(settings, autocommit=True) as conn:
        return load_index(conn, settings.community_snap_m)


def _fresh_grids(settings: Settings) -> tuple[tuple[int, Any], GridIndex]:
    with connect(settings, autocommit=True) as conn:
        # version first: an import committed in between is then seen at the next check
        return grid_version(conn), load_grid_index(conn)


def _fresh_grid_version(settings: Settings) -> tuple[int, Any]:
    with connect(settings, autocommit=True) as conn:
        return grid_version(conn)


def _unknown_detail(community_id: str | None, snap_m: float) -> str:
    if community_id is not None:
        return f"community {community_id!r} is not registered"
    within = f" or lies within {snap_m:g} m of it" if snap_m > 0 else ""
    return f"no community given and no community polygon contains the point{within}"
