from django.core.management.base import BaseCommand, CommandError

from workers.health import snapshot


class Command(BaseCommand):
    help = "Show Celery worker, queue and beat health; exit 1 when something is down."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=2.0)

    def handle(self, *args, timeout: float, **options):
        health = snapshot(timeout=timeout)
        if not health.broker_ok:
            raise CommandError(f"Broker unreachable: {health.error}")
        self.stdout.write(
            "Queues: " + ", ".join(f"{q}={n}" for q, n in health.queue_depths.items())
        )
        if health.workers:
            for name, queues in sorted(health.workers.items()):
                self.stdout.write(f"Worker {name}: {', '.join(queues)}")
        else:
            self.stdout.write("Workers: none answered")
        if health.beat_heartbeat_age is None:
            self.stdout.write("Beat: no heartbeat")
        else:
            self.stdout.write(
                f"Beat: leader {health.beat_leader or '-'}, "
                f"last tick {health.beat_heartbeat_age:.0f}s ago"
            )
        # Say which part is down: "not healthy" alone sends the operator digging.
        problems = []
        if not health.workers:
            problems.append(f"no worker answered within {timeout:g}s")
        if health.beat_heartbeat_age is None:
            problems.append("beat has no heartbeat (is a beat process running?)")
        elif not health.beat_ok:
            problems.append(f"beat's last tick was {health.beat_heartbeat_age:.0f}s ago")
        if problems:
            raise CommandError("Unhealthy: " + "; ".join(problems))
