// Python sources are embedded as text: Bun's `with { type: 'text' }` in the binary, a small
// plugin in vitest.config.ts under Node.
declare module '*.py' {
  const text: string;
  export default text;
}
