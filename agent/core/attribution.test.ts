import { containerRecord } from '../containers/testdata/container-record.js';
import { attribute, type Audited } from './attribution.js';
import { containerAudit } from './testdata/container-audit.js';

const audit = containerAudit;

const web = containerRecord({ kind: 'container', containerName: 'web' }, { id: 'web', mntns: 100 });
const db = containerRecord({ kind: 'container', containerName: 'db' }, { id: 'db', mntns: 200 });

function auditedSet(...entries: Audited[]): Map<string, Audited> {
  return new Map(entries.map((e) => [e.container.id, e]));
}

describe('attribute', () => {
  const shells = { container: web, audit: audit() };
  const execsOnly = { container: db, audit: audit({ interactiveShells: false, execs: true }) };
  const audited = auditedSet(shells, execsOnly);

  it('gives a line to the audited container that holds its mount namespace', () => {
    expect(attribute(web, audited, 'line')).toEqual({ to: 'container', entry: shells });
  });

  it('gives an exec to a container audited for execs, and not its lines', () => {
    expect(attribute(db, audited, 'exec')).toEqual({ to: 'container', entry: execsOnly });
    expect(attribute(db, audited, 'line')).toEqual({ to: 'none', why: 'not-captured' });
    expect(attribute(web, audited, 'exec')).toEqual({ to: 'none', why: 'not-captured' });
  });

  it('gives nothing of the host or of a container the registry does not know', () => {
    expect(attribute(undefined, audited, 'line')).toEqual({ to: 'none', why: 'unknown' });
  });

  it('gives nothing of a registered container that is not audited', () => {
    const other = containerRecord({ kind: 'container' }, { id: 'other', mntns: 300 });
    expect(attribute(other, audited, 'line')).toEqual({ to: 'none', why: 'not-audited' });
  });

  it('gives nothing of a container re-registered since it was decided: the old rules are not the new ones', () => {
    // Same id, a new record (e.g. a new init process whose namespace reuses an inode): undecided as yet.
    const again = containerRecord(
      { kind: 'container', containerName: 'web' },
      { id: 'web', mntns: 100, initPid: 99 },
    );
    expect(attribute(again, audited, 'line')).toEqual({ to: 'none', why: 'stale' });
  });

  it('answers by the record the registry holds for the namespace, not by id alone', () => {
    // db's namespace inode is reported, and db is audited for execs only: web's rules do not leak to it.
    expect(attribute(db, auditedSet(shells), 'line')).toEqual({ to: 'none', why: 'not-audited' });
  });
});
