//! Text that came from files other users control (database paths, file names, process names),
//! made safe to print: control characters and invalid UTF-8 are escaped, so a path cannot
//! clear a terminal, rewrite earlier lines or forge a log line.

use std::fmt;
use std::path::Path;

/// Displays `bytes` with every control character (C0, DEL, C1) and every invalid UTF-8 byte
/// escaped as `\xNN` (`\n`, `\t`, `\r` as themselves escaped), and backslashes doubled so an
/// escape in the output always means one in the input.
pub struct Escaped<'a>(pub &'a [u8]);

/// The path, escaped for a terminal or a log.
pub fn path(p: &Path) -> Escaped<'_> {
    use std::os::unix::ffi::OsStrExt;
    Escaped(p.as_os_str().as_bytes())
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `bytes` escaped into a `String`.
pub fn escaped(bytes: &[u8]) -> String {
    Escaped(bytes).to_string()
}

/// `75.2` → `1m15s`.
pub fn human_age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let s = s as u64;
        if s < 60 {
            format!("{s}s")
        } else {
            format!("{}m{:02}s", s / 60, s % 60)
        }
    } else {
        let s = s as u64;
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_neutralised() {
        let hostile = b"/srv/\x1b]0;pwned\x07\x1b[2J\nfake line\xff\xc2\x9b.db";
        let shown = escaped(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(
            shown,
            "/srv/\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\nfake line\\xff\\u{9b}.db"
        );
        assert_eq!(escaped("/srv/naïve\\x.db".as_bytes()), "/srv/naïve\\\\x.db");
    }
}
