/**
 * How the product names itself in what it writes to the API server: one field manager for every write
 * (server-side apply of policy status, AuditRecord creates and status updates), so `managedFields` shows one
 * owner, and one component for every Event it reports.
 *
 * The field manager is the one the policy status has always been applied under: server-side apply removes a
 * field we stop sending only when we own it, so that name must not change.
 */
export const FIELD_MANAGER = 'container-auditor-operator';

/** `source.component` and `reportingComponent` of our Events (what `kubectl describe` shows as From). */
export const EVENT_COMPONENT = 'container-auditor';
