import { parseOverlayMounts } from './overlay.js';

describe('overlay mounts from mountinfo', () => {
  const mountinfo = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '301 22 0:52 / /run/c/k8s.io/abc/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/c/snapshots/2/fs:/var/lib/c/snapshots/1/fs,upperdir=/var/lib/c/snapshots/3/fs,workdir=/var/lib/c/snapshots/3/work',
    '302 22 0:53 / /run/with\\040space rw - overlay overlay rw,lowerdir=/l\\040one',
    '303 22 0:54 / /run/relative rw - overlay overlay rw,lowerdir=1/fs:2/fs,upperdir=3/fs',
    'garbage',
  ].join('\n');

  it('finds upper then lowers, in order, with escapes undone, and skips relative layers', () => {
    expect(parseOverlayMounts(mountinfo)).toEqual([
      {
        mountPoint: '/run/c/k8s.io/abc/rootfs',
        layers: ['/var/lib/c/snapshots/3/fs', '/var/lib/c/snapshots/2/fs', '/var/lib/c/snapshots/1/fs'],
      },
      { mountPoint: '/run/with space', layers: ['/l one'] },
    ]);
  });
});
