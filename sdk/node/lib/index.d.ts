// Types of the `leveros` package (see docs/sdk-node.md).
import { Duplex } from 'stream';

export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Buffer
  | Value[]
  | { [key: string]: Value };

export type Callback<T> = (err: LeverError | null, result?: T) => void;

export class LeverError extends Error {
  /** 'REMOTE' for application errors, else the gRPC status name ('UNAVAILABLE', 'NOT_FOUND', ...). */
  code: string;
  /** The gRPC status number (2 for application errors). */
  status: number;
  /** The value the remote handler failed with (application errors only). */
  remote?: Value;
}

export interface ClientOptions {
  /** Dial every call here: "host:port" or "unix:/path.sock". */
  forceHost?: string;
  /** Deadline of each call in ms; 0 for none. */
  timeout?: number;
  /** Wait (within the timeout) for a target that cannot be reached yet. */
  waitForReady?: boolean;
  /** Send proto-JSON as Lever OS 0.1 (to call original servers). */
  protoJson?: boolean;
}

export interface CallContext {
  url: string;
  environment: string;
  service: string;
  resource: string;
  method: string;
  sourceEnvironment: string;
  deadline: number | null;
}

export class LeverStream extends Duplex {
  /** Server side: the call's context. */
  readonly context: CallContext | undefined;
  [Symbol.asyncIterator](): AsyncIterableIterator<any>;
}

export class Endpoint {
  readonly environment: string;
  readonly service: string;
  readonly resource: string;
  /** Unary call. An AbortSignal as the last argument (before an optional
   * callback) is not sent: aborting it cancels the call, which then fails
   * with an AbortError (`code: 'ABORT_ERR'`, `cause`: the signal's reason). */
  invoke(method: string, ...args: any[]): Promise<any> | undefined;
  invokeChan(method: string, ...args: any[]): Promise<LeverStream> | undefined;
}

export class Client {
  constructor(options?: ClientOptions);
  forceHost: string;
  timeout: number;
  waitForReady: boolean;
  protoJson: boolean;
  service(env: string, service: string): Endpoint;
  resource(env: string, service: string, resource: string): Endpoint;
  /** As Endpoint.invoke (an AbortSignal last cancels the call). */
  invokeURL(url: string, ...args: any[]): Promise<any> | undefined;
  invokeChanURL(url: string, ...args: any[]): Promise<LeverStream> | undefined;
  close(): void;
}

export interface ServerOptions {
  /** "unix:/abs/path.sock" or "host:port" (port 0: any). Default LEVEROS_LISTEN_ADDR, else 0.0.0.0:3837. */
  listenAddr?: string;
  /** liblever handler threads (default 4). */
  maxWorkers?: number;
}

export class Server {
  constructor(handler: object, options?: ServerOptions);
  readonly handler: object;
  readonly methods: string[];
  port: number;
  start(): number;
  stop(graceMs?: number, cb?: (err?: Error) => void): Promise<void>;
}

export function serve(handler: object, options?: ServerOptions): Server;
export function isChanMethod(name: string): boolean;
export interface LeverURL {
  environment: string;
  service: string;
  resource: string;
  method: string;
}
export function parseLeverURL(url: string): LeverURL;
export function formatLeverURL(url: LeverURL): string;
export const ownEnvironment: string;
export const ownService: string;
export const ownInstanceID: string;
