/**
 * SPIRE agents for the lab's simulated nodes. A cluster runs one agent per
 * node (meshfed's spire-agent DaemonSet) that attests with `k8s_psat`: a
 * projected service account token bound to its pod, which the server checks
 * with a TokenReview, then maps to the pod's node. kwok runs no container,
 * so the lab stands in for each Running spire-agent pod with a real
 * spire-agent process: it requests the pod's token from the API server
 * (TokenRequest, audience spire-server, bound to the pod) and starts the
 * agent with the `k8s_psat` node attestor against the cluster's real SPIRE
 * server, which is configured with the same plugin (src/lab/spire.ts). The
 * agent's SPIFFE ID is then spiffe://TD/spire/agent/k8s_psat/CLUSTER/NODE-UID,
 * as on a real cluster. An agent whose pod is gone is stopped.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { execFileBounded } from '../federation/transport.js';
import { SPIRE_NAMESPACE } from '../render/namespaces.js';

export const AGENT_AUDIENCE = 'spire-server';
export const AGENT_LABEL = 'app=spire-agent';

export interface AgentCluster {
  name: string;
  trustDomain: string;
  kubeconfig: string;
  /** The real server's API address and port. */
  serverAddress: string;
  serverPort: number;
  /** The server's admin socket, to read the bootstrap bundle. */
  serverSocket: string;
  /** Folder with spire-server and spire-agent. */
  binDir: string;
  /** Where the agents' data, sockets and logs go (one folder per pod). */
  dir: string;
}

const q = (s: string) => JSON.stringify(s);

export function agentConf(c: AgentCluster, dir: string): string {
  return `agent {
  data_dir = ${q(join(dir, 'data'))}
  log_level = "INFO"
  server_address = ${q(c.serverAddress)}
  server_port = "${c.serverPort}"
  socket_path = ${q(join(dir, 'a.sock'))}
  trust_bundle_path = ${q(join(dir, 'bootstrap.crt'))}
  trust_domain = ${q(c.trustDomain)}
}

plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      cluster = ${q(c.name)}
      token_path = ${q(join(dir, 'token'))}
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`;
}

interface Running {
  pod: string;
  child: ChildProcess;
}

export class LabAgents {
  private readonly running = new Map<string, Running>();
  private readonly api = new Map<string, CoreV1Api>();
  /** When each pod's agent was last started: one that exits is started again after 10 s, not at once. */
  private readonly started = new Map<string, number>();

  constructor(
    readonly clusters: AgentCluster[],
    private readonly log: (cluster: string, message: string) => void,
  ) {
    for (const c of clusters) {
      const kc = new KubeConfig();
      kc.loadFromFile(c.kubeconfig);
      this.api.set(c.name, kc.makeApiClient(CoreV1Api));
    }
  }

  /** One pass over every cluster: an agent for each Running spire-agent pod, none for pods gone. */
  async reconcileAll(): Promise<void> {
    await Promise.all(
      this.clusters.map((c) =>
        this.reconcile(c).catch((e: unknown) => this.log(c.name, `pass failed: ${(e as Error).message}`)),
      ),
    );
  }

  agents(): Array<{ cluster: string; pod: string; pid: number | undefined }> {
    return [...this.running].map(([k, r]) => ({ cluster: k.split('/')[0]!, pod: r.pod, pid: r.child.pid }));
  }

  private async reconcile(c: AgentCluster): Promise<void> {
    const api = this.api.get(c.name)!;
    const pods = (
      await api.listNamespacedPod({ namespace: SPIRE_NAMESPACE, labelSelector: AGENT_LABEL })
    ).items.filter(
      (p) => p.status?.phase === 'Running' && p.spec?.nodeName && !p.metadata?.deletionTimestamp,
    );
    const want = new Set(pods.map((p) => `${c.name}/${p.metadata!.uid}`));
    for (const [key, r] of this.running)
      if (key.startsWith(`${c.name}/`) && !want.has(key)) {
        this.log(c.name, `pod ${r.pod} gone: stopping its agent`);
        r.child.kill('SIGTERM');
        this.running.delete(key);
      }
    for (const p of pods) {
      const key = `${c.name}/${p.metadata!.uid}`;
      if (this.running.has(key) || Date.now() - (this.started.get(key) ?? 0) < 10_000) continue;
      this.started.set(key, Date.now());
      const name = p.metadata!.name!;
      const dir = join(c.dir, p.metadata!.uid!.slice(0, 8));
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(join(dir, 'data'), { recursive: true });
      const token = await api.createNamespacedServiceAccountToken({
        namespace: SPIRE_NAMESPACE,
        name: p.spec?.serviceAccountName ?? 'default',
        body: {
          spec: {
            audiences: [AGENT_AUDIENCE],
            expirationSeconds: 7200,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid: p.metadata!.uid! },
          },
        },
      });
      writeFileSync(join(dir, 'token'), token.status?.token ?? '', { mode: 0o600 });
      const bundle = await execFileBounded(
        join(c.binDir, 'spire-server'),
        ['bundle', 'show', '-socketPath', c.serverSocket],
        {
          timeoutMs: 20_000,
        },
      );
      if (bundle.code !== 0) throw new Error(`bundle show: ${bundle.stderr.trim()}`);
      writeFileSync(join(dir, 'bootstrap.crt'), bundle.stdout);
      writeFileSync(join(dir, 'agent.conf'), agentConf(c, dir));
      const out = openSync(join(dir, 'spire-agent.log'), 'a');
      const child = spawn(join(c.binDir, 'spire-agent'), ['run', '-config', join(dir, 'agent.conf')], {
        stdio: ['ignore', out, out],
      });
      child.on('exit', (code) => {
        if (this.running.get(key)?.child === child) {
          this.log(c.name, `agent of ${name} exited (${code}); see ${join(dir, 'spire-agent.log')}`);
          this.running.delete(key);
        }
      });
      this.running.set(key, { pod: name, child });
      this.log(c.name, `agent for pod ${name} on node ${p.spec!.nodeName} (pid ${child.pid})`);
    }
  }

  async stop(): Promise<void> {
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(
      all.map(
        (r) =>
          new Promise<void>((res) => {
            if (r.child.exitCode !== null) return res();
            r.child.once('exit', () => res());
            r.child.kill('SIGTERM');
            setTimeout(() => r.child.kill('SIGKILL'), 5_000).unref();
          }),
      ),
    );
  }
}
