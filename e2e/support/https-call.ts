/** One request to an HTTPS endpoint on the loopback (the operator's agents' endpoint, in tests), answered whole. */
import { type Agent, request } from 'node:https';

export interface HttpsAnswer {
  status: number;
  /** Parsed when it is JSON, else the text. */
  body: unknown;
  /** The response's Connection header. */
  connection: string | undefined;
}

export interface HttpsCallOptions {
  port: number;
  /** The CA the server's certificate must chain to. */
  ca: string | Buffer;
  method: 'GET' | 'POST';
  path: string;
  /** Sent as a bearer token. */
  token?: string;
  /** Sent as application/json. */
  body?: string | Buffer;
  /** Default: none (a connection of its own). */
  agent?: Agent | false;
  /** Ask for a kept-alive connection, as the agent does. */
  keepAlive?: boolean;
  /** Given a way to cut the request short, once it is sent. */
  onRequest?: (destroy: () => void) => void;
}

export function httpsCall(options: HttpsCallOptions): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: options.port,
        method: options.method,
        path: options.path,
        ca: options.ca,
        agent: options.agent ?? false,
        headers: {
          ...(options.token !== undefined ? { Authorization: `Bearer ${options.token}` } : {}),
          ...(options.body !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...(options.keepAlive ? { Connection: 'keep-alive' } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection });
        });
      },
    );
    req.on('error', reject);
    options.onRequest?.(() => req.destroy());
    req.end(options.body);
  });
}
