/**
 * The Node.js flags the operator and the agent run with: the images' ENTRYPOINT passes them to node before
 * cli/container-auditor.js (images/images.node.test.ts checks they are these; the demo runs the images), and
 * so do the tests that start the CLI.
 *
 * --max-semi-space-size=16: V8's young generation may grow to 3 x 16 MiB, the cap it had in Node.js 20.
 * Node.js 24's V8 lets it grow to 3 x 64 MiB, whatever the memory limit: under a burst of reports the
 * operator's resident memory went from about 190 to 340 MiB, and the agent's with it, on a node where it
 * shares the pod's limit with nothing but itself (bench/README.md, "Node.js runtimes"). V8 reads the flag
 * when the heap is set up only (v8.setFlagsFromString at run time has no effect on it), hence the command
 * line.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16'];
