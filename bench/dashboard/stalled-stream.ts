import { connect, type Socket } from 'node:net';

/** An event stream request whose client never reads the answer (a stalled tab, a sleeping laptop). */
export type StalledStream = {
  /** True once the server closed or reset the connection. */
  readonly ended: boolean;
  close(): void;
};

/**
 * Opens `GET path` on `url` (http://host:port, loopback) on a raw socket and never reads from it:
 * the socket's receive buffer fills, then the kernel's, then whatever the server keeps for it.
 * `headers`: extra request headers (credentials).
 */
export function openStalledStream(
  url: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<StalledStream> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let ended = false;
    const socket: Socket = connect({ host: hostname, port: Number(port) }, () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAccept: text/event-stream\r\n${extra}\r\n`,
      );
      // Not reading: no 'data' listener, and paused so nothing is pulled past the first buffer.
      socket.pause();
      resolve({
        get ended() {
          return ended;
        },
        close: () => socket.destroy(),
      });
    });
    socket.on('error', (err) => {
      ended = true;
      reject(err);
    });
    socket.on('close', () => (ended = true));
  });
}

/**
 * Sends `GET path` to `url` (loopback) and closes the socket as soon as the answer starts, or after
 * 2 s: a client that asks and leaves at once.
 */
export function dropRequest(url: string, path: string, headers: Record<string, string> = {}): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n${extra}\r\n`);
    });
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.once('data', done);
    socket.once('error', done);
    setTimeout(done, 2_000).unref();
  });
}
