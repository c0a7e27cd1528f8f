"""``python -m tests.support.consumer_process``: the test projection behind a DurableConsumer
(or, with ``--faststream``, the kit's FastStream subscriber, run as the services run theirs).

A real process, so the fault tests can SIGKILL it mid-batch.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from services.shared.bus.consumer import ConsumerSettings, DurableConsumer
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, run_subscribers, service_broker
from services.shared.bus.names import BusNames
from services.shared.logging import configure_logging
from tests.support.projection import EventTable


async def run(args: argparse.Namespace) -> None:
    names = BusNames(stream=args.stream, subject_prefix=args.prefix, dead_letter_stream=args.dlq_stream,
                     dead_letter_prefix=args.dlq_prefix)  # fmt: skip
    table = EventTable(Path(args.db), args.durable, slow=args.slow)
    settings = ConsumerSettings(durable=args.durable, names=names, fetch_batch=args.batch)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.faststream:
            broker = service_broker(args.nats, name=f"consumer-{args.durable}")
            await run_subscribers(broker, [FastStreamSubscriber(broker, table, settings)], stop)
        else:
            await DurableConsumer(args.nats, table, settings).run(stop)
    finally:
        table.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("db", "nats", "stream", "prefix", "dlq-stream", "dlq-prefix", "durable"):
        parser.add_argument(f"--{option}", required=True)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--faststream", action="store_true", help="the kit's FastStream subscriber")
    configure_logging("INFO", json=False)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
