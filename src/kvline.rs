//! The one codec of vmwatch's text lines: `key=value` fields separated by
//! single spaces, values percent-encoded (docs/protocol.md, "Payload
//! syntax").
//!
//! The wire protocol's records, the panel command's input lines and the
//! state file's `pending` lines all use it, so a value is escaped and
//! checked the same way wherever it travels.

use std::borrow::Cow;

/// Bytes that appear in values unescaped; every other byte is `%XX`.
fn is_plain(b: u8) -> bool {
    PLAIN[b as usize]
}

/// [`is_plain`] as a table: every value of every record is checked with
/// it, byte by byte.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'@' | b'+' | b','
            );
        b += 1;
    }
    t
};

/// Percent-encodes a value (uppercase hex), so values never hold a space,
/// `=` or a newline.
pub fn escape(value: &str, out: &mut String) {
    if value.is_empty() {
        // `k=` is not valid on the wire. Nothing we send is empty (libvirt
        // names are never empty and a missing detail is already `-`), so the
        // only safe spelling of "nothing" is the documented `-`.
        out.push('-');
        return;
    }
    for &b in value.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
}

/// [`escape`]d into a new string.
pub fn escaped(value: &str) -> String {
    let mut out = String::new();
    escape(value, &mut out);
    out
}

/// Decodes a percent-encoded value; rejects any byte that should have been
/// escaped and any `%` not followed by two uppercase hex digits.
pub fn unescape(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            };
            match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                // One spelling per value: a byte that needs no escape is
                // never escaped (docs/protocol.md).
                (Some(h), Some(l)) if is_plain(h << 4 | l) => {
                    return Err(format!("needless escape in `{}`", short(value)))
                }
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(format!("bad escape in `{}`", short(value))),
            }
            i += 3;
        } else if is_plain(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(format!("unescaped byte 0x{b:02x} in `{}`", short(value)));
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{}` is not UTF-8", short(value)))
}

/// [`unescape`] without copying a value that holds no escape (most do).
fn unescape_borrowed(value: &str) -> Result<Cow<'_, str>, String> {
    if value.bytes().all(is_plain) {
        Ok(Cow::Borrowed(value))
    } else {
        unescape(value).map(Cow::Owned)
    }
}

pub fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Writes one line: an optional leading word, then `k=v` fields separated
/// by single spaces, every value escaped. The one writer of the format.
pub struct Line<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Line<'a> {
    pub fn new(out: &'a mut String) -> Line<'a> {
        Line { out, empty: true }
    }

    fn sep(&mut self) {
        if !self.empty {
            self.out.push(' ');
        }
        self.empty = false;
    }

    /// A bare word (a panel function name, a header's version and type).
    pub fn word(mut self, w: &str) -> Line<'a> {
        self.sep();
        self.out.push_str(w);
        self
    }

    /// `key=value`, the value escaped.
    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Line<'a> {
        self.sep();
        self.out.push_str(key);
        self.out.push('=');
        escape(&value.to_string(), self.out);
        self
    }

    /// `key=value` if there is a value.
    pub fn opt(self, key: &str, value: Option<impl std::fmt::Display>) -> Line<'a> {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// Ends the line with `\n`.
    pub fn end(self) {
        self.out.push('\n');
    }
}

/// Fields of one line, in order, with duplicate keys rejected; values
/// borrow from the line unless they held an escape.
pub struct Fields<'a>(Vec<(&'a str, Cow<'a, str>)>);

impl<'a> Fields<'a> {
    pub fn parse(line: &'a str) -> Result<Fields<'a>, String> {
        let mut fields: Vec<(&str, Cow<str>)> = Vec::with_capacity(8);
        for tok in line.split(' ') {
            let (k, v) = tok
                .split_once('=')
                .ok_or_else(|| format!("field `{}` is not key=value", short(tok)))?;
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(format!("bad key `{}`", short(k)));
            }
            if v.is_empty() {
                return Err(format!("`{k}` has an empty value"));
            }
            if fields.iter().any(|(kk, _)| *kk == k) {
                return Err(format!("`{k}` appears twice"));
            }
            fields.push((k, unescape_borrowed(v)?));
        }
        Ok(Fields(fields))
    }

    /// A required field; unknown extra fields are ignored (newer senders).
    pub fn get(&self, key: &str) -> Result<&str, String> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
            .ok_or_else(|| format!("missing `{key}`"))
    }

    pub fn num(&self, key: &str) -> Result<u64, String> {
        let v = self.get(key)?;
        if !crate::vocab::is_decimal(v) {
            return Err(format!(
                "`{key}` is not a decimal number without sign or leading zeros"
            ));
        }
        v.parse::<u64>()
            .map_err(|_| format!("`{key}` does not fit 64 bits"))
    }

    /// An optional number: absent is `None`, present must be valid.
    pub fn opt_num(&self, key: &str) -> Result<Option<u64>, String> {
        match self.0.iter().any(|(k, _)| *k == key) {
            true => self.num(key).map(Some),
            false => Ok(None),
        }
    }

    /// A word that must belong to a vocabulary (docs/protocol.md), as the
    /// type that holds it: `parse` says what the word means, if anything.
    pub fn word<T>(&self, key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
        let v = self.get(key)?;
        parse(v).ok_or_else(|| format!("`{key}` is `{}`, not a documented value", short(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_reversible_and_strict() {
        let mut s = String::new();
        escape("a b=c%\n\u{e9}", &mut s);
        assert_eq!(s, "a%20b%3Dc%25%0A%C3%A9");
        assert_eq!(unescape(&s).unwrap(), "a b=c%\n\u{e9}");
        assert!(unescape("a%2g").is_err());
        assert!(unescape("a%2a").is_err());
        assert!(unescape("a b").is_err());
        assert!(unescape("%FF").is_err());
        assert!(unescape("%41").is_err(), "A is never escaped");
    }
}
