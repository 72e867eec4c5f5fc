import type { Response } from 'express';

/** One message of a Server-Sent Events stream, encoded once and written to every client as it is. */
export function sseMessage(event: string, data: unknown): Buffer {
  return Buffer.from(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

const KEEP_ALIVE = Buffer.from(': keep-alive\n\n');

/**
 * One client's event stream, with backpressure. A write the socket could not take at once leaves the
 * client "behind": until the socket drains, further messages are skipped (each message is a whole
 * state, so nothing is lost but intermediate states), so a client never holds more than one message in
 * the dashboard's memory. On drain it gets `latest()` at once. A client behind for longer than
 * `stallMs` (a tab that stopped reading, a laptop asleep) is dropped; a live EventSource reconnects.
 */
export class EventStream {
  private behindSince: number | null = null;
  /** Whether a message was skipped while behind (then the newest is sent on drain). */
  private missed = false;
  private dropped = false;

  constructor(
    readonly res: Response,
    private readonly opts: {
      stallMs: number;
      /** The newest message, sent when a client that was behind catches up. */
      latest: () => Buffer | undefined;
      onSkip?: () => void;
      onDrop?: () => void;
    },
  ) {
    res.on('drain', () => {
      if (this.behindSince === null) return;
      this.behindSince = null;
      const latest = this.missed ? this.opts.latest() : undefined;
      this.missed = false;
      if (latest) this.write(latest);
    });
  }

  /** Opens the stream: status, headers, and the browser's reconnect delay. */
  open(): void {
    this.res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    this.res.flushHeaders();
    this.write(Buffer.from('retry: 2000\n\n'));
  }

  /** Writes `chunk` unless the client is behind (then skips it, or drops a client stalled too long). */
  send(chunk: Buffer, now = Date.now()): void {
    if (this.dropped) return;
    if (this.behindSince !== null) {
      if (now - this.behindSince > this.opts.stallMs) this.drop();
      else {
        this.missed = true;
        this.opts.onSkip?.();
      }
      return;
    }
    this.write(chunk);
  }

  keepAlive(now = Date.now()): void {
    this.send(KEEP_ALIVE, now);
  }

  end(): void {
    this.res.end();
  }

  private write(chunk: Buffer): void {
    if (!this.res.write(chunk)) this.behindSince ??= Date.now();
  }

  private drop(): void {
    this.dropped = true;
    this.opts.onDrop?.();
    // Its 'close' removes it from its run's clients.
    this.res.destroy();
  }
}
