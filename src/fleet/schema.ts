/**
 * The fleet file's structure as a zod schema: types, enums and unknown keys.
 * Cross-field rules (uniqueness, references, lifetimes) live in rules.ts; the
 * defaults that depend on other fields live in resolve.ts. The JSON Schema
 * that editors use is generated from this schema (`meshfed schema`).
 */
import { z } from 'zod';
import { FLEET_API_VERSION, FLEET_KIND } from './model.js';

const duration = z.string().describe('A Go duration, e.g. "1440h", "90m".');

const exposure = z
  .strictObject({
    type: z
      .enum(['LoadBalancer', 'NodePort'])
      .optional()
      .describe('How peers reach it. Default LoadBalancer.'),
    nodePort: z.number().int().optional().describe('Fixed node port (30000-32767), only with type NodePort.'),
    address: z
      .string()
      .optional()
      .describe('A stable host or host:port peers use (e.g. a DNS name). Absent: discovered at apply time.'),
  })
  .describe('How this endpoint is exposed to the other clusters.');

const cluster = z.strictObject({
  name: z.string().describe('Cluster name (DNS-1123 label): Istio clusterName and SPIRE k8s_psat cluster.'),
  context: z.string().optional().describe('kubeconfig context. Default: the cluster name.'),
  trustDomain: z.string().optional().describe('SPIFFE trust domain of this cluster, e.g. foo.com.'),
  network: z.string().optional().describe('Istio network name, e.g. foo-network.'),
  bundleEndpoint: exposure.optional(),
  eastWestGateway: exposure.optional(),
});

const lifetime = z.strictObject({
  duration: duration.optional(),
  renewBefore: duration.optional(),
});

const app = z.strictObject({ enabled: z.boolean().optional() });

export const fleetFileSchema = z
  .strictObject({
    apiVersion: z.literal(FLEET_API_VERSION),
    kind: z.literal(FLEET_KIND),
    metadata: z.strictObject({ name: z.string().optional() }).optional(),
    spec: z
      .strictObject({
        meshID: z.string().optional().describe('Istio mesh ID. Default multi-mesh.'),
        profile: z
          .enum(['current', 'seed'])
          .optional()
          .describe('Version profile: current upstream, or the guide’s own versions. Default current.'),
        versions: z
          .strictObject({
            kubernetes: z.string().optional(),
            istio: z.string().optional(),
            spire: z.string().optional(),
            certManager: z.string().optional(),
            registrarVersion: z.string().optional(),
            spiffeCsiDriver: z.string().optional(),
          })
          .optional()
          .describe('Overrides of the profile’s versions.'),
        clusters: z.array(cluster).optional().describe('Two or more clusters. Default: the guide’s two.'),
        federation: z
          .strictObject({
            mode: z.enum(['full-mesh', 'pairs']).optional().describe('Default full-mesh.'),
            pairs: z
              .array(z.array(z.string()))
              .optional()
              .describe('With mode pairs: [a, b] cluster-name pairs that federate.'),
            bundleEndpointPort: z.number().int().optional().describe('Default 8443.'),
            refreshHint: duration.optional().describe('Default 5m.'),
          })
          .optional(),
        ca: z
          .strictObject({
            root: lifetime.optional().describe('cert-manager root CA. Default 21600h, renew 7200h before.'),
            istio: lifetime
              .optional()
              .describe('Istio plug-in CA `cacerts`. Default 1440h, renew 360h before.'),
            spire: z
              .strictObject({
                caTTL: duration.optional().describe('SPIRE intermediate CA TTL. Default 24h.'),
                svidTTL: duration.optional().describe('Workload X.509-SVID TTL. Default 1h.'),
              })
              .optional(),
          })
          .optional(),
        telemetry: z
          .strictObject({
            metrics: z
              .enum(['prometheus', 'none'])
              .optional()
              .describe(
                'Istio’s metrics provider. Default prometheus (Istio’s stats filter in every proxy); none leaves it out, for proxies built without it (the lab’s upstream Envoy).',
              ),
          })
          .optional(),
        apps: z
          .strictObject({
            helloworld: app.optional(),
            sleep: app.optional(),
            bookinfo: z
              .strictObject({ enabled: z.boolean().optional(), clusters: z.array(z.string()).optional() })
              .optional(),
            ingressRoute: app.optional(),
          })
          .optional(),
      })
      .optional(),
  })
  .describe('meshfed fleet: clusters that become one federated Istio mesh with SPIRE identities.');

export type FleetFile = z.infer<typeof fleetFileSchema>;

/** JSON Schema (draft 2020-12) for editors. */
export function fleetJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(fleetFileSchema, { target: 'draft-2020-12' }) as Record<string, unknown>;
  return {
    $id: 'meshfed.dev/v1alpha1/Fleet',
    title: 'meshfed Fleet',
    ...schema,
  };
}
