/** Running a program to completion in tests, with its output collected. */
import { spawn } from 'node:child_process';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunCommandOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long; the result then has code -1 and says so in stderr. */
  timeoutMs?: number;
  /** 'latin1' keeps every byte as one character, for byte-for-byte comparisons. Default utf8. */
  encoding?: BufferEncoding;
}

/** Runs a program to completion, collecting its output; never rejects for a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  options: RunCommandOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const encoding = options.encoding ?? 'utf8';
      let err = Buffer.concat(stderr).toString(encoding);
      if (timedOut) err += `\n[${command} killed after ${options.timeoutMs} ms]`;
      else if (signal) err += `\n[${command} killed by ${signal}]`;
      resolve({ code: code ?? -1, stdout: Buffer.concat(stdout).toString(encoding), stderr: err });
    });
    child.stdin.on('error', () => {}); // a program that does not read its input
    child.stdin.end(options.input ?? '');
  });
}
