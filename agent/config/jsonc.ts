/**
 * Config files are JSONC: JSON with comments and trailing commas, the dialect editors (and
 * our own docs' examples) use. Parsed with Microsoft's jsonc-parser, the one VS Code uses;
 * every syntax error is reported with the file, line and column, not a bare offset.
 */
import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { SkeinError } from '../../common/errors/index.ts';

const WHAT: Partial<Record<string, string>> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'invalid number',
  PropertyNameExpected: 'expected a property name in double quotes',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":"',
  CommaExpected: 'expected "," or the end of the object or array',
  CloseBraceExpected: 'expected "}"',
  CloseBracketExpected: 'expected "]"',
  EndOfFileExpected: 'unexpected content after the end of the document',
  InvalidCommentToken: 'invalid comment',
  UnexpectedEndOfComment: 'unterminated /* comment',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'unterminated number',
  InvalidUnicode: 'invalid \\u escape',
  InvalidEscapeCharacter: 'invalid escape character',
  InvalidCharacter: 'invalid character in a string (control characters must be escaped)',
};

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

/** Parses JSONC text; throws SKEIN_ERR_CONFIG naming `file`, line and column on the first syntax error. */
export function parseJsonc(text: string, file: string): unknown {
  const errors: ParseError[] = [];
  const value = parse(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false });
  const first = errors[0];
  if (first) {
    const { line, column } = lineColumn(text, first.offset);
    const code = printParseErrorCode(first.error);
    let what = WHAT[code] ?? code;
    // Show the offending text: a bare word is the usual mistake (unquoted key, single quotes).
    if (code === 'InvalidSymbol') what += ` ${JSON.stringify(text.slice(first.offset, first.offset + Math.min(first.length || 1, 20)))} (names and strings need double quotes)`;
    throw new SkeinError('SKEIN_ERR_CONFIG', `config file ${file}:${line}:${column}: ${what}`, { source: file, line, column });
  }
  return value;
}
