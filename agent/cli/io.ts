/** What a command needs from the process, so commands are testable without spawning. */
export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const processIo: Io = {
  out: (s) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`),
  err: (s) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`),
};
