/**
 * The suite's one skip policy (test/helpers/requires.ts): what counts as CI, and the message a
 * skip (outside CI) or a failure (in CI) carries.
 */
import { describe, expect, it } from 'vitest';
import { condition, inCi, missing, reportSkips, tool } from '../helpers/requires.ts';

describe('requires: the CI skip policy', () => {
  it.each([
    [{ CI: 'true' }, true],
    [{ CI: '1' }, true],
    [{ CI: 'yes' }, true],
    [{ CI: 'false' }, false],
    [{ CI: '0' }, false],
    [{ CI: '' }, false],
    [{}, false],
  ])('CI=%j → in CI: %s', (env, ci) => {
    expect(inCi(env)).toBe(ci);
  });

  it('names what is missing and the Debian package to install', () => {
    expect(missing([tool('sh', 'dash')])).toBeUndefined();
    expect(missing([tool('no-such-tool-skein', 'skein-tools'), condition('root', false, 'CI runs as root')])).toBe(
      'no-such-tool-skein is missing: apt-get install skein-tools; root is missing (CI runs as root)',
    );
  });

  it('skips learnt afterwards fail in CI and only warn outside it', () => {
    const ci = process.env.CI;
    try {
      process.env.CI = 'true';
      expect(() => reportSkips('suite.py', ['test_x: needs python3-numpy (apt-get install python3-numpy)'])).toThrow(
        /in CI a skipped test fails the run: suite.py: 1 test\(s\) skipped:\n {2}test_x: needs python3-numpy/,
      );
      expect(() => reportSkips('suite.py', [])).not.toThrow();
      process.env.CI = 'false';
      expect(() => reportSkips('suite.py', ['test_x: why'])).not.toThrow();
    } finally {
      if (ci === undefined) delete process.env.CI;
      else process.env.CI = ci;
    }
  });
});
