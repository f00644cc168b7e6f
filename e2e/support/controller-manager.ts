/**
 * A kube-controller-manager with only the controllers a test names, against the test control plane (which runs
 * none: e2e/cluster/cluster.sh). The chart's test needs `clusterrole-aggregation`, which fills the built-in
 * admin, edit and view roles from the ClusterRoles labelled to aggregate into them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { testKubeconfigPath } from './cluster.js';
import { REPO_ROOT } from './paths.js';

export const KUBE_CONTROLLER_MANAGER = join(REPO_ROOT, '.cache', 'bin', 'kube-controller-manager');

export class ControllerManager {
  private stderr = '';

  private constructor(private readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr = (this.stderr + d).slice(-8_000);
    });
  }

  static start(controllers: string[]): ControllerManager {
    if (!existsSync(KUBE_CONTROLLER_MANAGER))
      throw new Error(
        `${KUBE_CONTROLLER_MANAGER} is missing: run 'bash e2e/cluster/build.sh kube-controller-manager'`,
      );
    const child = spawn(
      KUBE_CONTROLLER_MANAGER,
      [
        `--kubeconfig=${testKubeconfigPath()}`,
        `--controllers=${controllers.join(',')}`,
        '--leader-elect=false',
        // No serving endpoint: nothing here reads its health or metrics, and no port can collide.
        '--secure-port=0',
        '--v=1',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    return new ControllerManager(child);
  }

  /** The tail of its log, for failure messages. */
  get log(): string {
    return this.stderr;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
