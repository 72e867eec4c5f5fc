import { Counter, Gauge, type Registry } from 'prom-client';
import type { LiveRuns } from './live-runs.js';

/**
 * The live page's event streams on `registry`: clients connected, updates skipped for clients that
 * were not reading, and clients dropped for not reading. Read from `live` at each scrape.
 */
export function registerStreamMetrics(registry: Registry, live: LiveRuns): void {
  new Gauge({
    name: 'conveyor_dashboard_stream_clients',
    help: 'Event stream clients (open live pages) connected now.',
    registers: [registry],
    collect() {
      this.set(live.clients);
    },
  });
  new Gauge({
    name: 'conveyor_dashboard_watched_runs',
    help: 'Runs the dashboard keeps a poller for (each read every DASHBOARD_POLL_MS while watched).',
    registers: [registry],
    collect() {
      this.set(live.pollers);
    },
  });
  const total = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  total(
    'conveyor_dashboard_stream_updates_skipped_total',
    'Updates not sent to a client that had not read the previous one yet.',
    () => live.counts.skipped,
  );
  total(
    'conveyor_dashboard_stream_clients_dropped_total',
    'Event stream clients dropped for not reading for too long.',
    () => live.counts.dropped,
  );
}
