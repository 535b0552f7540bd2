/**
 * A list of one kind the lab's controllers keep by watching, as a kubelet's
 * or a cloud controller's informers do, instead of listing the kind on every
 * pass: client-node's informer (list, then watch from its resourceVersion,
 * listing again on 410 Gone), started again a second after it fails (an API
 * server restarted or not yet up), and a callback on every change so that
 * the controller runs a pass at once.
 */
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
} from '@kubernetes/client-node';

/** Milliseconds between attempts while the list or the watch fails. */
const RETRY_MS = 1_000;

export class Watched<T extends KubernetesObject> {
  private readonly informer;
  private stopped = false;
  private running = false;
  private failure: unknown;
  private synced = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    kc: KubeConfig,
    /** The collection's path, `/api/v1/pods` say. */
    readonly path: string,
    list: () => Promise<KubernetesListObject<T>>,
    onChange: () => void,
    private readonly log: (line: string) => void,
  ) {
    this.informer = makeInformer<T>(kc, path, list);
    for (const verb of ['add', 'update', 'delete'] as const) this.informer.on(verb, onChange);
    this.informer.on('error', (e: unknown) => {
      this.failure = e ?? new Error('the watch ended with an error');
      if (!this.running) this.again();
    });
  }

  /** Starts listing and watching; resolves when the first list is in, or after a failed attempt (it tries again). */
  async start(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    this.failure = undefined;
    try {
      await this.informer.start();
    } finally {
      this.running = false;
    }
    if (this.failure === undefined) this.synced = true;
    else this.again();
  }

  private again(): void {
    if (this.stopped || this.retry) return;
    this.log(`${this.path}: ${describe(this.failure)}; listing again in ${RETRY_MS / 1000} s`);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.start();
    }, RETRY_MS);
  }

  /** Whether a first list has come in (the objects are the cluster's, at most a watch event behind). */
  get ready(): boolean {
    return this.synced;
  }

  /** The objects as last seen (of one namespace with `namespace`). */
  list(namespace?: string): T[] {
    return [...this.informer.list(namespace)];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.informer.stop();
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

/**
 * A controller's reconcile loop: `pass` every `periodMs` (what a watch does
 * not show: processes, probes, files), and `settleMs` after `poke()` (a
 * watch saw a change), so that a burst of changes makes one pass. One pass
 * at a time; a failed pass is logged and the loop goes on.
 */
export class PassLoop {
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private poked = false;
  private stopped = false;
  private running: Promise<void> | undefined;
  /** The pass under way, the first one (from `start()`) included. */
  private current: Promise<void> | undefined;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly o: { periodMs: number; settleMs: number; log(line: string): void },
  ) {}

  /** Runs a first pass, then keeps passing until `stop()`. */
  async start(): Promise<void> {
    await this.once();
    this.running = this.run();
  }

  /** Something changed: a pass soon. */
  poke = (): void => {
    this.poked = true;
    this.wake?.();
  };

  private async once(): Promise<void> {
    this.current = this.pass().catch((e: unknown) => this.o.log(`pass failed: ${(e as Error).message}`));
    await this.current;
    this.current = undefined;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await new Promise<void>((resolve) => {
        let settling = false;
        const settle = () => {
          if (settling) return;
          settling = true;
          clearTimeout(this.timer);
          this.timer = setTimeout(resolve, this.stopped ? 0 : this.o.settleMs);
        };
        this.wake = settle;
        if (this.poked || this.stopped) settle();
        else this.timer = setTimeout(resolve, this.o.periodMs);
      });
      this.wake = undefined;
      if (this.stopped) return;
      this.poked = false;
      await this.once();
    }
  }

  /** Stops passing; resolves when the pass under way (if any, the first one included) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.running;
    await this.current;
  }
}
