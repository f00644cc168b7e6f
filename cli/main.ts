/**
 * `container-auditor <command>`: the package's one executable (cli/container-auditor.js runs it, compiled).
 */
import { AGENT_USAGE, UsageError, agentMain } from '../agent/main.js';
import { OPERATOR_USAGE, OperatorUsageError, operatorMain } from '../operator/main.js';

const USAGE = `Usage: container-auditor <command> [options]

Commands:
  agent      the node agent (see: container-auditor agent --help)
  operator   the operator

${AGENT_USAGE}

${OPERATOR_USAGE}`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'agent':
        return await agentMain(rest);
      case 'operator':
        return await operatorMain(rest);
      case undefined:
      case '-h':
      case '--help':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (error) {
    // Bad input (flags, a policy file, a node that lacks something) is one clear message, not a stack.
    const parseError = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    if (error instanceof UsageError || error instanceof OperatorUsageError || parseError) {
      process.stderr.write(`container-auditor: ${(error as Error).message}\n`);
      return 2;
    }
    throw error;
  }
}
