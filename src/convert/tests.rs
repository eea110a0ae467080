//! Tests of the nginx lexer and parser: quoting, escapes, comments, blocks, includes with
//! globs, and errors with their line and column.
