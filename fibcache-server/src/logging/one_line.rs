//! One event, one line: the text format's fields with their control characters escaped.
//!
//! Much of what the server logs is text it did not write: a panic message or a log message
//! forwarded from a plugin, an error and its sources (`cause`), a reply of a Redis server, a
//! path or an endpoint from the operator's settings. Any of them may hold a newline, and
//! `tracing-subscriber` writes a `%value` (and an event's message) as it is, so one such value
//! used to start a new line that no tool could tell from a real one. Rather than remember an
//! escape at every call site (and miss the next one, or a dependency's event), the text
//! format writes every field of every event, the message included, through [`OneLineFields`].
//!
//! Guarantees: a control character (`\n`, `\r`, `\t`, ESC, DEL, C1, ...) or a Unicode line or
//! paragraph separator inside a value is written as its Rust escape (`\n`, `\u{1b}`), so a
//! line written by the text format ends only where its event ends. Not guaranteed: that a value
//! can be told back from its escaped form; a backslash or a quote already in a value is left
//! as it is, so that a value recorded with `?` keeps the standard `Debug` form. For machines,
//! use `--log-format json`, which escapes as JSON does and is not touched here.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

/// `tracing-subscriber`'s own field formatting, written through [`Escaped`].
#[derive(Debug)]
pub(super) struct OneLineFields(DefaultFields);

impl OneLineFields {
    pub(super) fn new() -> Self {
        OneLineFields(DefaultFields::new())
    }
}

impl<'writer> FormatFields<'writer> for OneLineFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        self.0
            .format_fields(Writer::new(&mut Escaped(&mut writer)), fields)
    }
}

/// A writer that escapes what would break a line and passes everything else through.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, mut text: &str) -> fmt::Result {
        while let Some((at, c)) = text.char_indices().find(|&(_, c)| breaks_lines(c)) {
            self.0.write_str(&text[..at])?;
            write!(self.0, "{}", c.escape_debug())?;
            text = &text[at + c.len_utf8()..];
        }
        self.0.write_str(text)
    }
}

/// Whether a terminal or a log reader may start a new line (or redraw one) at `c`.
fn breaks_lines(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        Escaped(&mut out).write_str(text).unwrap();
        out
    }

    #[test]
    fn newlines_returns_and_other_controls_are_escaped_and_quotes_are_kept() {
        assert_eq!(
            escaped("first \"quoted\" line\r\nsecond\tline"),
            r#"first "quoted" line\r\nsecond\tline"#
        );
        assert_eq!(
            escaped("\u{1b}[2J\u{7f}\u{85}\u{2028}é"),
            r"\u{1b}[2J\u{7f}\u{85}\u{2028}é"
        );
        assert_eq!(escaped("nothing to do"), "nothing to do");
    }

    /// Everything the subscriber writes.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Out {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer\nerror")]
    struct Outer(#[source] io::Error);

    #[test]
    fn an_event_with_newlines_in_every_kind_of_value_is_one_line() {
        let out = Out::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(OneLineFields::new())
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("span", path = %"/tmp/a\nb");
            let _entered = span.enter();
            let err = Outer(io::Error::other("inner\r\nsource"));
            tracing::warn!(
                cause = %"a panic\non two lines",
                quoted = ?"say \"hi\"\n",
                error = &err as &(dyn std::error::Error + 'static),
                "a message\nfrom a plugin"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'), "{text}");
        for expected in [
            r"span{path=/tmp/a\nb}",
            r"a message\nfrom a plugin",
            r"cause=a panic\non two lines",
            r#"quoted="say \"hi\"\n""#,
            r"error=outer\nerror error.sources=[inner\r\nsource]",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text:?}");
        }
    }
}
