export * from './meta.js';
export * from './rules.js';
export * from './containerauditpolicy.js';
export * from './auditrecord.js';
