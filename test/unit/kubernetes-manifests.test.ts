/**
 * deploy/kubernetes/*.yaml against the Kubernetes API schemas, offline, twice over:
 *
 *  - kubernetes-models (npm, tommy351/kubernetes-models-ts): validators compiled from the
 *    Kubernetes OpenAPI schemas — types, enums, required fields, formats of every object;
 *  - its TypeScript interfaces, generated from the same schemas, with the compiler's excess
 *    property check on each manifest written as an object literal: an unknown or misspelt
 *    field anywhere (`hostUser`, `seccompProfil`) is an error, as under kubeconform -strict.
 *
 * kubeconform itself is neither a Debian package nor on npm, and kubectl validates only
 * against a live API server. Then the pieces are checked against each other and against
 * skein's own loader: the ConfigMap's config loads (with the DaemonSet's environment), names
 * the SRV record the headless Service publishes, and the probes hit its admin listener.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { Namespace, Service, ConfigMap, Secret } from 'kubernetes-models/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { loadConfig } from '../../agent/config/load.ts';
import { ROOT } from '../helpers/agent.ts';

const DIR = join(ROOT, 'deploy/kubernetes');

/** apiVersion/kind → the model that validates it and the module of its TypeScript interface. */
const KINDS: Record<string, { model: new (data: never) => { validate(): void }; types: string; iface: string }> = {
  'v1/Namespace': { model: Namespace, types: 'kubernetes-models/v1/Namespace', iface: 'INamespace' },
  'v1/Service': { model: Service, types: 'kubernetes-models/v1/Service', iface: 'IService' },
  'v1/ConfigMap': { model: ConfigMap, types: 'kubernetes-models/v1/ConfigMap', iface: 'IConfigMap' },
  'v1/Secret': { model: Secret, types: 'kubernetes-models/v1/Secret', iface: 'ISecret' },
  'apps/v1/DaemonSet': { model: DaemonSet, types: 'kubernetes-models/apps/v1/DaemonSet', iface: 'IDaemonSet' },
};

type Doc = Record<string, any>;

function manifests(): Array<{ file: string; doc: Doc }> {
  const out: Array<{ file: string; doc: Doc }> = [];
  for (const file of readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    for (const d of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
      if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      const doc = d.toJS() as Doc | null;
      if (doc) out.push({ file, doc });
    }
  }
  return out;
}

/** Compiler errors of `const m: I<kind> = <manifest>` for each manifest (excess properties included). */
function typeErrors(docs: Array<{ file: string; doc: Doc }>): string[] {
  const source = docs
    .map(({ doc }, i) => {
      const k = KINDS[`${doc.apiVersion}/${doc.kind}`]!;
      return `import type { ${k.iface} as T${i} } from '${k.types}';\nexport const m${i}: T${i} = ${JSON.stringify(doc)};`;
    })
    .join('\n');
  // Next to the repository's node_modules, so the imports resolve as they would in the repo.
  const dir = mkdtempSync(join(ROOT, 'node_modules/.kube-check-'));
  try {
    const file = join(dir, 'manifests.ts');
    writeFileSync(file, source);
    const program = ts.createProgram([file], { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, skipLibCheck: true });
    return ts.getPreEmitDiagnostics(program).map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : undefined;
      // Each manifest is one line of the generated source: name its file and kind.
      const doc = line === undefined ? undefined : docs[Math.floor((line - 1) / 2)];
      return `${doc ? `${doc.file} (${String(doc.doc.kind)}): ` : ''}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('deploy/kubernetes', () => {
  const docs = manifests();
  const find = (kind: string) => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);

  it('holds a Namespace, a headless Service, a ConfigMap, a Secret and a DaemonSet, each of a known kind', () => {
    expect(docs.map((d) => `${d.doc.apiVersion}/${d.doc.kind}`).sort()).toEqual(['apps/v1/DaemonSet', 'v1/ConfigMap', 'v1/Namespace', 'v1/Secret', 'v1/Service']);
  });

  it.each(docs.map((d) => [`${d.file}: ${d.doc.kind} ${d.doc.metadata?.name}`, d] as const))('%s validates against the Kubernetes schema', (_name, { doc }) => {
    const k = KINDS[`${doc.apiVersion}/${doc.kind}`];
    expect(k, `no validator for ${doc.apiVersion}/${doc.kind}: add it to KINDS`).toBeDefined();
    expect(() => new k!.model(doc as never).validate()).not.toThrow();
  });

  it('has no field the Kubernetes API does not define (strict: the TypeScript interfaces of the same schemas)', () => {
    expect(typeErrors(docs)).toEqual([]);
  }, 60_000);

  it('the validators catch what they are here to catch: a wrong type, a misspelt field', () => {
    const ds = structuredClone(find('DaemonSet')[0]!);
    ds.spec.template.spec.containers[0].readinessProbe.periodSeconds = '5';
    expect(() => new DaemonSet(ds).validate()).toThrow(/periodSeconds must be integer/);
    const typo = structuredClone(find('DaemonSet')[0]!);
    typo.spec.template.spec.hostUser = typo.spec.template.spec.hostUsers;
    delete typo.spec.template.spec.hostUsers;
    expect(typeErrors([{ file: 'typo', doc: typo }]).join('\n')).toMatch(/'"hostUser"' does not exist in type 'IPodSpec'/);
  }, 60_000);

  it("the ConfigMap's config loads with the DaemonSet's environment, follows the Service's SRV record, and the probes reach its admin listener", () => {
    const [cm] = find('ConfigMap');
    const [svc] = find('Service');
    const [ds] = find('DaemonSet');
    const container = ds!.spec.template.spec.containers[0];
    // The DaemonSet's environment, with $(NODE_NAME) expanded as the kubelet does.
    const env = Object.fromEntries((container.env as Array<{ name: string; value?: string }>).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!.replaceAll('$(NODE_NAME)', 'node-1')]));
    const dir = mkdtempSync(join(tmpdir(), 'skein-k8s-'));
    writeFileSync(join(dir, 'agent.config.json'), cm!.data['agent.config.json']);
    const { config } = loadConfig({ path: join(dir, 'agent.config.json'), env: { ...env, PATH: process.env.PATH } });
    expect(config.agent.name).toBe('node-1');
    expect(config.tls.cert).toBe('/etc/skein/tls/node-1.crt');
    expect(config.sandbox.profile).toBe('full');

    expect(svc!.spec.clusterIP).toBe('None');
    const port = svc!.spec.ports[0];
    const srv = `_${port.name}._${port.protocol.toLowerCase()}.${svc!.metadata.name}.${svc!.metadata.namespace}.svc.cluster.local`;
    expect(config.discovery.dns.names).toEqual([srv]);
    expect(svc!.spec.selector).toEqual(ds!.spec.template.metadata.labels);
    expect(container.ports[0].containerPort).toBe(Number(config.agent.listen.split(':')[1]));

    const admin = config.admin.listen;
    expect(admin.startsWith('127.0.0.1:')).toBe(true);
    expect(container.livenessProbe.exec.command.join(' ')).toContain(`http://${admin}/healthz`);
    expect(container.readinessProbe.exec.command.join(' ')).toContain(`http://${admin}/readyz`);
    // Every file the config names is mounted.
    const mounts = (container.volumeMounts as Array<{ mountPath: string }>).map((m) => m.mountPath);
    for (const path of [config.tls.cert!, config.tls.key!, config.tls.ca!, config.routines.echo!.file!])
      expect(
        mounts.some((m) => path === m || path.startsWith(`${m}/`)),
        path,
      ).toBe(true);
  });

  it('states the security context the sandbox needs: no privilege, no capability, the runtime default seccomp and AppArmor profiles', () => {
    const pod = find('DaemonSet')[0]!.spec.template.spec;
    const c = pod.containers[0].securityContext;
    expect(c).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, procMount: 'Default', readOnlyRootFilesystem: true });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' }, appArmorProfile: { type: 'RuntimeDefault' } });
    expect(find('Namespace')[0]!.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });
});
