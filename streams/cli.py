"""``omni``: the command line. Entry points read the settings; nothing below them does."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.settings import Settings

err = Console(stderr=True)
out = Console()


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _setup_logging(settings: Settings) -> None:
    from streams import logs

    logs.setup(settings.log_json)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP interrupt as Ctrl-C does, so a command with something to undo
    stops it on its way out instead of dying and leaving it behind: the stack demo and
    bench started, the workers ``rebuild --pause-workers`` paused."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.group()
def main() -> None:
    """Omnichannel touchpoint stream processor."""


# -- the embedded stack ---------------------------------------------------------------------


@main.command()
@click.option("--workers", type=int, default=None, help="Worker processes (OMNI_WORKERS).")
@click.option("--json", "as_json", is_flag=True, help="Print the stack status as JSON.")
def up(workers: int | None, as_json: bool) -> None:
    """Start what is not configured externally: broker, Redis, sink, workers."""
    from connectors import stack
    from connectors.embedded import StartFailed

    settings = _settings(workers=workers)
    started = time.monotonic()
    err.print(f"starting the stack under {settings.home.resolve()} ...")
    try:
        state = stack.up(settings, on_progress=err.print)
    except stack.AlreadyRunning as exc:
        _fail(str(exc))
    except StartFailed as exc:
        _fail(f"start failed: {exc}")
    err.print(f"stack up in {time.monotonic() - started:.1f}s")
    _print_status(state, as_json)


@main.command()
def down() -> None:
    """Stop exactly the processes `omni up` started."""
    from connectors import stack

    try:
        stopped = stack.down(_settings())
    except stack.NotRunning as exc:
        _fail(str(exc))
    err.print(f"stopped: {', '.join(stopped)}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Report each component of the running stack."""
    from connectors import stack

    _print_status(_with_rates(stack.status(_settings())), as_json)


def _scrape(port: int) -> dict[str, float]:
    """Events handled and messages behind (summed over partitions) of one worker."""
    from streams import metrics

    samples = metrics.scrape(port, timeout=3)
    return {
        "events": metrics.total(samples, "omni_events_total"),
        "lag": metrics.total(samples, "omni_consumer_lag"),
    }


def _with_rates(state: dict[str, Any]) -> dict[str, Any]:
    """Each healthy worker's events handled, events/s over one second, and lag."""
    workers = {
        name: c
        for name, c in state.get("components", {}).items()
        if name.startswith("worker") and c.get("healthy")
    }
    try:
        first = {name: _scrape(c["port"]) for name, c in workers.items()}
        time.sleep(1.0)
        second = {name: _scrape(c["port"]) for name, c in workers.items()}
    except OSError:
        return state  # a worker went away meanwhile: report what is known
    for name, c in workers.items():
        c["events"] = int(second[name]["events"])
        c["events_per_s"] = round(second[name]["events"] - first[name]["events"], 1)
        c["lag"] = int(second[name]["lag"])
    return state


def redact(value: Any) -> Any:
    """A URL or DSN with its password replaced: status output never shows a secret."""
    if isinstance(value, str):
        return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _print_status(state: dict[str, Any], as_json: bool) -> None:
    state = redact(state)
    if as_json:
        out.print_json(json.dumps(state, default=str))
        return
    workers = f"  workers: [bold]{state['workers']}[/]" if state.get("workers") else ""
    out.print(f"stack: [bold]{state['state']}[/]{workers}  home: {state.get('home')}")
    table = Table("component", "status", "pid", "port", "alive", "healthy", "restarts",
                  "events", "events/s", "lag", "log")  # fmt: skip
    for name, c in state.get("components", {}).items():
        # the supervisor's word: starting, healthy, restarting, paused, failed (given up on)
        status = str(c.get("status", ""))
        if c.get("exit_code") is not None and not c.get("alive"):
            status += f" (exit {c['exit_code']})"
        table.add_row(
            name, status, str(c["pid"]), str(c["port"]), str(c.get("alive")),
            str(c.get("healthy")), str(c.get("restarts", 0)), str(c.get("events", "")),
            str(c.get("events_per_s", "")), str(c.get("lag", "")), c["log"],
        )  # fmt: skip
    out.print(table)
    endpoints = state.get("endpoints", {})
    for name, value in endpoints.items():
        out.print(f"  {name:<16} {value}")
    if endpoints.get("sink_url"):
        out.print(f"  {'dashboard':<16} {endpoints['sink_url']}/dashboard/")


@main.command(hidden=True)
def supervise() -> None:
    """(internal) The supervisor process behind `omni up`."""
    from connectors.stack import Supervisor

    settings = _settings()
    _setup_logging(settings)
    sys.exit(Supervisor(settings).run())


@main.command()
def worker() -> None:
    """Run one stream worker (a faust worker of the touchpoints agent)."""
    from connectors.embedded import free_port
    from streams import gc_tuning
    from streams.app import create_app
    from streams.endpoints import resolve

    settings = _settings()
    port = settings.worker_web_port or free_port()
    app = create_app(settings, resolve(settings), port)
    gc_tuning.tune(settings.gc_threshold)
    sys.argv = [
        "omni worker",
        # faust's banner and progress go to stdout, outside logging: not JSON
        *(["--quiet"] if settings.log_json else []),
        "worker",
        "--loglevel",
        "info",
        "--web-port",
        str(port),
        "--web-host",
        "127.0.0.1",
    ]
    app.main()


@main.command()
def sink() -> None:
    """Run the ClickHouse sink (and, for embedded chDB, the read API)."""
    from connectors.embedded import free_port
    from streams.endpoints import resolve
    from streams.sink import InsecureBind, run_sink

    settings = _settings()
    _setup_logging(settings)
    try:
        run_sink(settings, resolve(settings), settings.sink_http_port or free_port())
    except InsecureBind as exc:
        _fail(str(exc), code=78)


# -- traffic ------------------------------------------------------------------------------------


def _publish(settings: Settings, events: int, members: int | None, seed: int, rate: float | None,
             duplicates: float, malformed: float) -> tuple[int, dict[str, int]]:  # fmt: skip
    from connectors.kafka import TouchpointProducer
    from streams.demo import publish
    from streams.endpoints import resolve
    from streams.simulate import Simulation
    from streams.wiring import rules

    endpoints = resolve(settings, kafka_only=True)
    sim = Simulation(
        events, members=members, seed=seed, duplicate_share=duplicates, malformed_share=malformed
    )
    with (
        _progress() as bar,
        TouchpointProducer(
            endpoints.kafka_bootstrap,
            settings.topic_prefix,
            config=endpoints.kafka_config,
            rules=rules(settings, validation_only=True),
            schema_registry_url=settings.schema_registry_url,
        ) as producer,
    ):
        task = bar.add_task("publishing", total=events)
        counts = publish(
            sim, producer, settings.topic_prefix, rate, lambda n, _: bar.update(task, completed=n)
        )
    return events, dict(counts)


@main.command()
@click.option("--events", type=int, default=20_000, show_default=True)
@click.option("--members", type=int, default=None, help="Distinct people (default: events / 8).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--rate", type=float, default=None, help="Events per second (default: as fast as possible)."
)
@click.option(
    "--duplicates", type=float, default=0.02, show_default=True, help="Share of re-sent events."
)
@click.option(
    "--malformed", type=float, default=0.01, show_default=True, help="Share of malformed messages."
)
def simulate(
    events: int,
    members: int | None,
    seed: int,
    rate: float | None,
    duplicates: float,
    malformed: float,
) -> None:
    """Publish realistic synthetic touchpoints to the running stack (or OMNI_KAFKA_BOOTSTRAP)."""
    from streams.endpoints import StackNotRunning

    try:
        produced, counts = _publish(_settings(), events, members, seed, rate, duplicates, malformed)
    except StackNotRunning as exc:
        _fail(str(exc))
    out.print(f"published {produced}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@main.command()
@click.argument("source", type=click.File("rb"))
@click.option("--skip-invalid", is_flag=True, help="Exit 0 even when some lines were invalid.")
def produce(source: Any, skip_invalid: bool) -> None:
    """Send touchpoints from a JSON-lines FILE (or - for stdin), one object per line with a
    "type" field. Invalid lines are reported with line number, field and reason, and never
    sent; the exit status is 1 if any line was invalid (unless --skip-invalid)."""
    from connectors.kafka import TouchpointProducer
    from schemas.jsonlines import LineError, parse_line
    from streams.core.errors import InvalidTouchpoint
    from streams.endpoints import StackNotRunning, resolve
    from streams.wiring import rules

    settings = _settings()
    try:
        endpoints = resolve(settings, kafka_only=True)
    except StackNotRunning as exc:
        _fail(str(exc))
    invalid: list[LineError] = []
    with TouchpointProducer(
        endpoints.kafka_bootstrap,
        settings.topic_prefix,
        config=endpoints.kafka_config,
        rules=rules(settings, validation_only=True),  # refused here as the workers would
        schema_registry_url=settings.schema_registry_url,
    ) as producer:
        for number, raw in enumerate(source, start=1):
            if not raw.strip():
                continue
            parsed = parse_line(number, raw.rstrip(b"\r\n"))
            if isinstance(parsed, LineError):
                invalid.append(parsed)
                continue
            type_name, record = parsed
            try:
                producer.send(record, type_name)
            except InvalidTouchpoint as exc:
                invalid.append(
                    LineError(
                        number, exc.field, exc.reason + (f" ({exc.detail})" if exc.detail else "")
                    )
                )
        sent = dict(producer.sent)
    for problem in invalid:
        err.print(f"[red]invalid[/] {problem}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(sent.items())) or "nothing"
    out.print(f"sent {sum(sent.values())}: {counts}; invalid lines: {len(invalid)}")
    if invalid and not skip_invalid:
        sys.exit(1)


@main.group()
def dlq() -> None:
    """Dead letters: what the workers could not decode or validate, and why."""


def _letters(reason: str | None = None, topic: str | None = None) -> list[Any]:
    from connectors.dlq import read_letters
    from streams.endpoints import resolve
    from streams.wiring import dlq_topic

    settings = _settings()
    endpoints = resolve(settings, kafka_only=True)
    with _progress() as bar:
        task = bar.add_task("reading", total=None)
        letters = [
            letter
            for letter in read_letters(
                endpoints.kafka_bootstrap,
                dlq_topic(settings),
                progress=lambda n: bar.update(task, completed=n),
                config=endpoints.kafka_config,
            )
            if (reason is None or letter.reason == reason)
            and (topic is None or letter.original_topic == topic)
        ]
    return letters


@dlq.command("ls")
@click.option("--reason", default=None, help="Only letters with this reason.")
@click.option("--topic", default=None, help="Only letters from this source topic.")
@click.option(
    "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Letters to list."
)
@click.option("--json", "as_json", is_flag=True)
def dlq_ls(reason: str | None, topic: str | None, limit: int, as_json: bool) -> None:
    """Count dead letters by source topic and reason, and list the latest (by the time
    they were dead-lettered, across the topic's partitions)."""
    from collections import Counter

    # read partition by partition: the time of failure orders them (ISO 8601, UTC)
    letters = sorted(_letters(reason, topic), key=lambda x: (x.failed_at, x.partition, x.offset))
    by_reason = Counter((letter.original_topic, letter.reason) for letter in letters)
    newest = letters[max(0, len(letters) - limit) :]  # (limit 0: none)
    if as_json:
        counted = [{"topic": t, "reason": r, "count": n} for (t, r), n in by_reason.most_common()]
        latest = [letter.summary() for letter in newest]
        print(json.dumps({"total": len(letters), "by_reason": counted, "latest": latest}))
        return
    out.print(f"{len(letters)} dead letters")
    table = Table("source topic", "reason", "count")
    for (t, r), n in by_reason.most_common():
        table.add_row(t, r, str(n))
    out.print(table)
    latest = Table("ref", "source", "field", "reason", "detail")
    for letter in newest:
        source = f"{letter.original_topic}/{letter.original_partition}@{letter.original_offset}"
        latest.add_row(letter.ref, source, letter.field, letter.reason, letter.detail[:60])
    out.print(latest)


@dlq.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
def dlq_show(ref: str, as_json: bool) -> None:
    """One dead letter by REF (<dlq partition>:<dlq offset>, as `dlq ls` shows)."""
    from connectors.errors import ServiceUnavailable
    from schemas.codec import DecodeError, decode
    from streams.wiring import resolver

    found = next((letter for letter in _letters() if letter.ref == ref), None)
    if found is None:
        _fail(f"no dead letter {ref}", code=2)
    try:  # read as the workers read it: Confluent framing through the registry, if set
        type_name, _ = decode(found.value, resolver(_settings()))
        decodes = f"decodes now as {type_name}"
    except DecodeError as exc:
        decodes = f"still fails: {exc.reason}"
    except ServiceUnavailable as exc:
        decodes = f"not known: {exc}"
    body = {**found.summary(), "decodes": decodes, "value_head_hex": found.value[:64].hex()}
    if as_json:
        print(json.dumps(body))
        return
    for k, v in body.items():
        out.print(f"{k:<20} {v}")


@dlq.command("replay")
@click.option("--reason", default=None, help="Only letters with this reason.")
@click.option("--topic", default=None, help="Only letters from this source topic.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; send nothing.")
def dlq_replay(reason: str | None, topic: str | None, dry_run: bool) -> None:
    """After a fix, send dead letters back onto their source topics, unchanged."""
    from connectors.kafka import TouchpointProducer
    from streams.endpoints import resolve

    settings = _settings()
    letters = [letter for letter in _letters(reason, topic) if letter.original_topic]
    partial = [letter for letter in letters if letter.partial]
    if partial:
        err.print(
            f"skipping {len(partial)} letters kept in part only (too large), e.g. {partial[0].ref}"
        )
        letters = [letter for letter in letters if not letter.partial]
    if dry_run:
        out.print(f"would replay {len(letters)} dead letters")
        return
    endpoints = resolve(settings, kafka_only=True)
    with (
        _progress() as bar,
        TouchpointProducer(endpoints.kafka_bootstrap, config=endpoints.kafka_config) as producer,
    ):
        task = bar.add_task("replaying", total=len(letters))
        for n, letter in enumerate(letters, start=1):
            producer.send_raw(letter.original_topic, letter.value, letter.key)
            bar.update(task, completed=n)
    out.print(f"replayed {len(letters)} dead letters onto their source topics")


@main.command()
@click.option("--events", type=int, default=20_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--workers", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
def demo(events: int, seed: int, workers: int | None, as_json: bool) -> None:
    """Start the embedded stack, run synthetic traffic through it, report, stop."""
    from connectors import stack
    from connectors.embedded import StartFailed
    from streams.demo import summary, wait_accounted
    from streams.endpoints import resolve
    from streams.simulate import campaign_budgets
    from streams.wiring import views

    settings = _settings(workers=workers)
    if not settings.campaign_budgets:  # the simulated campaigns' budgets, to run past
        settings = _settings(workers=workers, campaign_budgets=campaign_budgets(events))
    started = time.monotonic()
    err.print(
        f"omni demo: {events} touchpoints through the embedded stack in {settings.home.resolve()}"
    )
    with _signals_interrupt():
        try:
            stack.up(settings, on_progress=err.print)
        except (stack.AlreadyRunning, StartFailed) as exc:
            _fail(str(exc))
        try:
            startup = time.monotonic() - started
            err.print(f"stack up in {startup:.1f}s")
            t0 = time.monotonic()
            produced, _ = _publish(settings, events, None, seed, None, 0.02, 0.01)
            endpoints = resolve(settings)
            with _progress() as bar:
                task = bar.add_task("processing", total=produced)
                stats = wait_accounted(views(settings, endpoints), endpoints, produced,
                                       progress=lambda n, _: bar.update(task, completed=n),
                                       check=lambda: stack.raise_if_failed(settings))  # fmt: skip
            result = summary(settings, produced, stats, time.monotonic() - t0, startup)
        except (StartFailed, TimeoutError) as exc:
            stack.down(settings)
            _fail(str(exc))
        finally:
            with contextlib.suppress(stack.NotRunning):
                err.print("stopping the stack ...")
                stack.down(settings)
    if as_json:
        print(json.dumps(result))
    else:
        _print_summary(result)
    if not result["accounted"]:
        _fail("not every event is accounted for")


def _print_summary(r: dict[str, Any]) -> None:
    table = Table("", "", title="omni demo", show_header=False)
    rows = [
        ("produced", r["produced"]),
        ("processed", f"{r['processed']} (of which re-sent duplicates: {r['duplicates']})"),
        ("dead-lettered", r["dead_lettered"]),
        ("members (OneIDs)", f"{r['members']} after {r['merges']} merges"),
        ("points granted", r["points_total"]),
        ("reservations / backorders", f"{r['reservations']} / {r['backorders']}"),
        ("orders fulfilled / cancelled", f"{r['orders_fulfilled']} / {r['orders_cancelled']}"),
        ("points taken back", str(r["points_reversed"])),
        ("red envelopes past budget", str(r["claims_refused"])),
        ("merges refused (flagged)", str(r["merges_refused"])),
        ("facts in ClickHouse", f"{r['clickhouse_rows']} (written: {r['facts_written']})"),
        (
            "pipeline time",
            f"{r['elapsed_s']} s, {r['events_per_s']} events/s, {r['workers']} worker(s)",
        ),
        ("stack start-up", f"{r['startup_s']} s"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    out.print(table)
    out.print("per type: " + ", ".join(f"{k} {v}" for k, v in r["per_type"].items()))
    verdict = "[green]every event accounted for[/]" if r["accounted"] else "[red]MISMATCH[/]"
    out.print(verdict)


# -- look-ups ----------------------------------------------------------------------------------


def _lookup_kind(lookup: str) -> str:
    """What an error may say of a look-up: its TYPE when it is one, never the value (a
    phone typed without its `phone:` is all value)."""
    from streams.core.identity import LOOKUP_TYPES

    kind, sep, _ = lookup.partition(":")
    return kind.lower() if sep and kind.lower() in LOOKUP_TYPES else "lookup"


@main.command()
@click.argument("lookup")
@click.option("--json", "as_json", is_flag=True)
def member(lookup: str, as_json: bool) -> None:
    """A member by TYPE:VALUE (phone:, unionid:, openid:APPID:, card:, app:, device:, oneid:)."""
    from streams.core.errors import InvalidTouchpoint
    from streams.core.identity import parse_lookup
    from streams.endpoints import resolve
    from streams.wiring import phone_key, views

    settings = _settings()
    try:
        key = parse_lookup(lookup, phone_key(settings))
    except InvalidTouchpoint as exc:
        _fail(f"{_lookup_kind(lookup)}: {exc.reason}")
    found = views(settings, resolve(settings)).member(key)
    if found is None:
        _fail(f"no member for {_lookup_kind(lookup)}:…", code=2)
    if as_json:
        print(json.dumps(found))
    else:
        for k, v in found.items():
            out.print(f"{k:<14} {v}")


@main.command()
@click.argument("lookup")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def forget(lookup: str, yes: bool, as_json: bool) -> None:
    """Erase a person (TYPE:VALUE as for `omni member`): identity links, points and
    profile in Redis, their rows in ClickHouse; the erasure itself is recorded."""
    import time

    from connectors.errors import ServiceUnavailable
    from streams import reads
    from streams.core.errors import InvalidTouchpoint
    from streams.core.identity import parse_lookup
    from streams.endpoints import resolve
    from streams.rebuild import REBUILDING
    from streams.wiring import phone_key, views

    settings = _settings()
    try:
        key = parse_lookup(lookup, phone_key(settings))
    except InvalidTouchpoint as exc:
        _fail(f"{_lookup_kind(lookup)}: {exc.reason}")
    endpoints = resolve(settings)
    view = views(settings, endpoints)
    if view.client.exists(view.prefix + REBUILDING):
        _fail(
            "the views are being rebuilt (`omni rebuild` has not finished: run it to the end "
            "first); the replay would bring back what an erasure takes out now",
            code=2,
        )
    # Redis first: from then on no event can reach the person's data through their
    # identifiers. An erasure whose ClickHouse part failed is completed by its OneID.
    named = key.split(":", 1)[1] if key.startswith("oneid:") else None
    erased = view.erasure(named) if named else None
    if erased is None and named and view.resolve(key) is None:
        # a OneID no view holds any more (a `rebuild --from` cut the person off from it:
        # docs/operations.md): ClickHouse's merge log tells whom it went to
        try:
            group = reads.merge_group(endpoints, [named])
            held = [x for x in group if view.resolve("oneid:" + x) is not None]
            survivor = group[0]
            if held:
                key = "oneid:" + held[0]  # one person with a live member: erase them
            elif reads.rows_held(endpoints, group):
                erased = {"one_id": survivor, "absorbed": [], "identifiers": 0, "points": 0,
                          "at": int(time.time() * 1000)}  # fmt: skip
        except ServiceUnavailable as exc:
            _fail(f"no member for {_lookup_kind(lookup)}:… in Redis, and ClickHouse: {exc}")
        if erased is not None and not yes:
            click.confirm(
                f"{survivor} is in no view, but ClickHouse holds rows of it: erase them?",
                abort=True,
            )
    if erased is None:
        one_id = view.resolve(key)
        if one_id is None:
            _fail(f"no member for {_lookup_kind(lookup)}:…", code=2)
        if not yes:
            click.confirm(f"Erase member {one_id} and all their data?", abort=True)
        erased = view.forget(key, int(time.time() * 1000))
        if erased is None:  # erased meanwhile by someone else
            _fail(f"no member for {_lookup_kind(lookup)}:…", code=2)
    try:
        # OneIDs only ClickHouse's merge log makes the person's (a rebuild --from did not
        # replay the merge, either way round); then what redelivered events would re-emit of
        # them, then their ClickHouse rows (the person's identity keys only from the
        # erasure itself: a later completion by OneID has none, and scrubs by OneID alone)
        keys = erased.pop("keys", [])
        known = [erased["one_id"], *erased["absorbed"]]
        found = [x for x in reads.merge_group(endpoints, known) if x not in known]
        if found:  # kept with the erasure first: a rerun must reach them too
            erased["absorbed"] = sorted([*erased["absorbed"], *found])
            view.record_erasure(erased)
        one_ids = [erased["one_id"], *erased["absorbed"]]
        erased["results_blanked"] = view.blank_results(one_ids, keys)
        erased.update(
            reads.erase(
                endpoints, erased["one_id"], erased["absorbed"], erased["identifiers"], keys
            )
        )
    except ServiceUnavailable as exc:
        _fail(
            f"erased {erased['one_id']} from Redis, but its stored results or ClickHouse rows "
            f"are not erased yet ({exc}): run `omni forget oneid:{erased['one_id']} --yes` again",
            code=3,
        )
    if as_json:
        print(json.dumps(erased))
    else:
        out.print(
            f"erased {erased['one_id']} ({len(erased['absorbed'])} absorbed OneIDs, "
            f"{erased['identifiers']} identifiers, {erased['points']} points, "
            f"{erased['facts_deleted']} facts, {erased['identity_deleted']} merge-log rows, "
            f"{erased['ledger_deleted']} ledger entries)"
        )


@main.command()
@click.argument("sku")
@click.option("--location", default=None)
@click.option("--json", "as_json", is_flag=True)
def inventory(sku: str, location: str | None, as_json: bool) -> None:
    """Stock of a SKU per location: on hand, reserved, available to promise."""
    from streams.endpoints import resolve
    from streams.wiring import views

    settings = _settings()
    rows = views(settings, resolve(settings)).stock(sku, location)
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("location", "on hand", "reserved", "available")
    for r in rows:
        table.add_row(
            r["location"], str(r["on_hand"]), str(r["reserved"]), str(r["available_to_promise"])
        )
    out.print(table)


@main.command()
@click.argument("statement", required=False)
@click.option(
    "--file", "-f", "path", type=click.File("r"),
    help="Read the statement from this file (- for stdin), e.g. a saved dashboard query",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def sql(statement: str | None, path: Any, as_json: bool) -> None:
    """Run a read-only query on ClickHouse (ClickHouse's readonly setting enforces it). A
    saved dashboard query's parameters ({reporting_time_zone:String}) are filled in from
    the settings: omni sql -f connectors/dashboard/store_leaderboard.sql"""
    from connectors.clickhouse import QueryRefused, dashboard_parameters
    from connectors.errors import WarehouseUnavailable
    from streams import reads
    from streams.endpoints import resolve

    if (statement is None) == (path is None):
        _fail("give a STATEMENT or --file, one of them")
    statement = statement if path is None else path.read()
    settings = _settings()
    parameters = dashboard_parameters(settings.reporting_time_zone, statement)
    try:
        result = reads.query(resolve(settings), statement, parameters)
    except QueryRefused as exc:
        _fail(f"refused: {exc}")
    except WarehouseUnavailable as exc:
        _fail(str(exc))
    if as_json:
        print(
            json.dumps(
                [dict(zip(result.columns, r, strict=True)) for r in result.rows], default=str
            )
        )
        return
    table = Table(*result.columns)
    for r in result.rows:
        table.add_row(*(str(v) for v in r))
    out.print(table)


# -- pausing the embedded stack's workers ------------------------------------------------------


@main.group()
def workers() -> None:
    """Stop and start only the embedded stack's workers (broker, Redis and sink keep
    running): for `omni rebuild`, which needs the workers stopped."""


def _pause_workers(settings: Settings, timeout: float, undo: bool = False) -> list[str]:
    """Pause the embedded stack's workers, or exit with the reason (``undo``: after
    resuming those that were stopped)."""
    from connectors import stack

    started = time.monotonic()
    err.print("pausing the workers ...")
    try:
        names = stack.pause_workers(settings, timeout)
    except stack.NotRunning as exc:
        _fail(f"cannot pause the workers: {exc}", code=2)
    except TimeoutError as exc:
        if undo:
            _fail(f"{exc}; {_resume_workers(settings, timeout) or 'resumed them'}")
        _fail(f"{exc}; `omni workers resume` starts them again")
    err.print(f"workers paused: {', '.join(names) or 'none'} ({time.monotonic() - started:.1f}s)")
    return names


def _resume_workers(settings: Settings, timeout: float) -> str | None:
    """Resume the embedded stack's workers; None once healthy, else what went wrong."""
    from connectors import stack
    from connectors.embedded import StartFailed

    started = time.monotonic()
    err.print("resuming the workers ...")
    try:
        names = stack.resume_workers(settings, timeout)
    except (stack.NotRunning, StartFailed, TimeoutError) as exc:
        return f"workers not resumed: {exc}"
    err.print(f"workers resumed: {', '.join(names) or 'none'} ({time.monotonic() - started:.1f}s)")
    return None


_WORKERS_TIMEOUT = click.option(
    "--timeout", type=float, default=150.0, show_default=True, help="Seconds to wait."
)


@workers.command("pause")
@_WORKERS_TIMEOUT
def workers_pause(timeout: float) -> None:
    """Stop the workers (as on shutdown) and keep them stopped; waits until they exited."""
    _pause_workers(_settings(), timeout)


@workers.command("resume")
@_WORKERS_TIMEOUT
def workers_resume(timeout: float) -> None:
    """Start the paused workers again; waits until every one is healthy."""
    problem = _resume_workers(_settings(), timeout)
    if problem is not None:
        _fail(problem)


# -- rebuilding the views ---------------------------------------------------------------------


def _timestamp_ms(value: str) -> int:
    """ISO 8601 (UTC when no zone is given) or epoch milliseconds."""
    from datetime import UTC, datetime

    if value.isdigit():
        return int(value)
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: ISO 8601 time or epoch milliseconds") from exc
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


@main.command()
@click.option(
    "--from",
    "from_",
    default=None,
    metavar="TIMESTAMP",
    help="Replay only messages that reached Kafka at or after this time "
    "(ISO 8601, UTC if no zone; or epoch ms).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--pause-workers",
    is_flag=True,
    help="Embedded stack: pause its workers first and resume them afterwards (also when "
    "the rebuild fails or is refused).",
)
def rebuild(from_: str | None, yes: bool, as_json: bool, pause_workers: bool) -> None:
    """Wipe the Redis views and replay the input topics into them (workers stopped)."""
    from connectors.errors import ServiceUnavailable
    from streams import rebuild as rebuilding
    from streams.endpoints import StackNotRunning, resolve

    settings = _settings()
    from_ms = _timestamp_ms(from_) if from_ else None
    try:
        endpoints = resolve(settings)
    except StackNotRunning as exc:
        _fail(str(exc))
    prefix = f"{settings.topic_prefix}:"

    def confirm(total: int) -> bool:
        return yes or click.confirm(
            f"Wipe the Redis views under {prefix!r} and replay {total} messages into them?"
        )

    bar = _progress()  # shown once confirmed: a prompt and a live bar do not mix
    task = bar.add_task("replaying", total=None)

    def on_total(total: int) -> None:
        bar.update(task, total=total)
        bar.start()

    again = (
        "run it again (it starts over). Views it wiped already stay marked as being "
        "rebuilt: the workers hold their batches until a rebuild finishes"
    )
    # SIGTERM too must resume the workers this rebuild paused (the finally below)
    with _signals_interrupt():
        paused: list[str] | None = None  # the workers this rebuild paused, to resume
        resume_problem: str | None = None
        if pause_workers:
            from connectors.stack import Paths

            already = Paths(settings.home.resolve()).pause.exists()
            names = _pause_workers(settings, 150.0, undo=not already)
            if already:
                err.print("the workers were paused before: they stay paused afterwards")
            else:
                paused = names
        try:
            report = rebuilding.rebuild(
                settings,
                endpoints,
                from_ms,
                on_total=on_total,
                on_progress=lambda n: bar.update(task, completed=n),
                confirm=confirm,
            )
        except rebuilding.RebuildRefused as exc:
            _fail(f"rebuild refused: {exc}", code=2)
        except click.Abort:  # answered no at the prompt (a RuntimeError too): nothing failed
            raise
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP during the replay
            _fail(f"rebuild interrupted; {again}", code=130)
        except (ServiceUnavailable, RuntimeError) as exc:
            _fail(f"rebuild failed: {exc}; {again}")
        finally:
            bar.stop()
            if paused is not None:
                resume_problem = _resume_workers(settings, 150.0)
                if resume_problem is not None:
                    err.print(
                        f"[bold red]error:[/] {resume_problem}; `omni workers resume` retries"
                    )
    body = report.as_dict()
    if paused is not None:
        body["workers_paused"] = paused
    if as_json:
        print(json.dumps(body))
        if resume_problem is not None:
            sys.exit(1)
        return
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(body["outcomes"].items())) or "none"
    out.print(
        f"rebuilt the views under {prefix!r}: replayed {body['replayed']} of {body['total']} "
        f"messages from {body['partitions']} partitions in {body['elapsed_s']} s "
        f"({outcomes}); {body['dead_lettered']} dead letters (not published again); "
        f"{body['members']} members; {body['keys_deleted']} keys wiped first"
    )
    if resume_problem is not None:
        sys.exit(1)


# -- benchmark ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--seconds",
    type=float,
    default=60.0,
    show_default=True,
    help="Throughput window: the pipeline works through a backlog this long.",
)
@click.option(
    "--members", type=int, default=100_000, show_default=True, help="Distinct simulated people."
)
@click.option("--workers", type=int, default=None, help="Worker processes (OMNI_WORKERS).")
@click.option(
    "--rate",
    type=float,
    default=1000.0,
    show_default=True,
    help="Steady events/s of the latency phase.",
)
@click.option(
    "--latency-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Length of the steady latency phase.",
)
@click.option(
    "--soak-seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Stretch the steady phase to this long to watch worker RSS (e.g. 600).",
)
@click.option(
    "--baseline-seconds",
    type=float,
    default=20.0,
    show_default=True,
    help="Window of the bare-faust baseline.",
)
@click.option("--warmup-events", type=int, default=10_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--producer-linger-ms",
    type=click.IntRange(min=0),
    default=None,
    help="linger.ms of the simulated producers [default: the producer SDK's].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@click.option("--save", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON object to this file.")  # fmt: skip
def bench(seconds: float, members: int, workers: int | None, rate: float,
          latency_seconds: float, soak_seconds: float, baseline_seconds: float,
          warmup_events: int, seed: int, producer_linger_ms: int | None, as_json: bool,
          save: str | None) -> None:  # fmt: skip
    """Benchmark the pipeline on a fresh embedded stack (docs/benchmarks.md)."""
    from connectors.embedded import StartFailed
    from streams import bench as benchmark

    config = benchmark.BenchConfig(seconds, members, workers, rate, latency_seconds,
                                   soak_seconds, baseline_seconds, warmup_events, seed,
                                   producer_linger_ms)  # fmt: skip
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: float, total: float | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        try:
            with _signals_interrupt():
                result = benchmark.run(config, progress, err.print)
        except (benchmark.BenchError, StartFailed, TimeoutError) as exc:
            _fail(str(exc))
    if save:
        with open(save, "w") as fh:
            json.dump(result, fh, indent=2)
    if as_json:
        print(json.dumps(result))
    else:
        table = Table("", "", title="omni bench", show_header=False)
        for what, value in benchmark.report_rows(result):
            table.add_row(what, value)
        out.print(table)
        targets = Table("target", "measured", "met", title="targets")
        for t in result["targets"].values():
            met = "[green]yes[/]" if t["met"] else "[red]no[/]"
            targets.add_row(t["target"], t["value"], met)
        out.print(targets)
    failed = benchmark.failed_baselines(result)
    if failed:
        # the run's own numbers are above; without the baselines its ratios are missing
        _fail(
            f"baseline(s) not measured: {', '.join(failed)} (logs under {result['stack']['home']})"
        )


def _ints(value: str) -> tuple[int, ...]:
    try:
        parsed = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated whole numbers") from None
    if not parsed or min(parsed) < 0:
        raise click.BadParameter(f"{value!r}: expected one or more numbers >= 0")
    return parsed


@main.command("bench-broker")
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=1000.0,
    show_default=True,
    help="Messages/s produced while measuring.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    help="Measured window of each step.",
)
@click.option(
    "--lingers",
    default="5,50,200",
    show_default=True,
    help="The producers' linger.ms values to compare, each on a fresh broker.",
)
@click.option(
    "--fill",
    type=click.IntRange(min=0),
    default=50_000,
    show_default=True,
    help="One-message batches written to another topic between the last two steps.",
)
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
def bench_broker(rate: float, seconds: float, lingers: str, fill: int, partitions: int,
                 as_json: bool) -> None:  # fmt: skip
    """What the embedded broker costs at a steady rate, by the producers' linger and by what
    it already holds (docs/benchmarks.md)."""
    from connectors.embedded import StartFailed
    from streams import broker_bench

    config = broker_bench.ProbeConfig(rate, seconds, _ints(lingers), fill, partitions)
    try:
        with _signals_interrupt():
            result = broker_bench.run(config, lambda step: err.print(f"[dim]{step}[/]"))
    except (StartFailed, TimeoutError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result))
        return
    table = Table("", "", title="omni bench-broker", show_header=False)
    for what, value in broker_bench.report_rows(result):
        table.add_row(what, value)
    out.print(table)


if __name__ == "__main__":
    main()
