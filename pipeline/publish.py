"""``./run.sh publish``: publish an export's lines to a Pub/Sub topic (one message per line), creating
the topic and a subscription when absent. For trying the Pub/Sub import locally, and for replaying a
backlog into a subscription.

    python -m pipeline.publish FILE [FILE…] --topic projects/P/topics/T [--subscription projects/P/subscriptions/S]
"""

from __future__ import annotations

import sys

from pipeline.cli import StrictParser, run_command


def ensure_topic_and_subscription(topic: str, subscription: str | None, ack_deadline: int = 30) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.create_topic(name=topic)
    except AlreadyExists:
        pass
    if subscription:
        subscriber = pubsub_v1.SubscriberClient()
        try:
            subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=ack_deadline)
        except AlreadyExists:
            pass
        subscriber.close()


def publish_lines(topic: str, lines, attributes: dict | None = None) -> int:
    """Publish each line as one message; returns how many were published (all confirmed)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    futures = [publisher.publish(topic, line, **(attributes or {})) for line in lines]
    for future in futures:
        future.result(timeout=60)
    return len(futures)


def parser() -> StrictParser:
    parser = StrictParser(prog="./run.sh publish", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="NDJSON files or globs (compressed by extension)")
    parser.add_argument("--topic", required=True, help="projects/P/topics/T")
    parser.add_argument("--subscription", default=None, help="projects/P/subscriptions/S to create if absent")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # after the flags: the reading (Beam's file systems) costs a second and a half, --help and a typo none
    from transforms.core.records import ImportContext, LineBatch
    from transforms.core.settings import ReadLimits
    from transforms.sources.files import expand_patterns, plan_reads
    from transforms.sources.read import read_task

    ensure_topic_and_subscription(args.topic, args.subscription)
    ctx = ImportContext("publish", 0)
    total = 0
    for task in plan_reads(expand_patterns(args.inputs), "ndjson", 0):
        for item in read_task(task, ctx, ReadLimits(batch_size=5000)):
            if isinstance(item, LineBatch):
                total += publish_lines(args.topic, item.lines, {"source": task.uri.rsplit("/", 1)[-1]})
    print(f"published {total:,} message(s) to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "the messages published before it stay on the topic (publishing again "
                               "sends them again; the import keeps one row per eventId)"))
