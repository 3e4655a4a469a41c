//! Threshold ranges in the Monitoring Plugins syntax (`10`, `10:`, `~:10`,
//! `10:20`, `@10:20`), as `-w` and `-c` of check_vmwatch take them.
//!
//! A range says which values are fine; a value outside it raises the alert,
//! or, with a leading `@`, a value inside it does. Ends are inclusive.

use std::fmt;

/// One parsed range; `text` is kept for the perfdata, which repeats it.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    inside: bool,
    text: String,
}

impl Range {
    /// Parses `text`; the error says what is wrong and shows the syntax.
    pub fn parse(text: &str) -> Result<Range, String> {
        let bad = |why: &str| {
            format!("bad range `{text}`: {why} (use N, N:, ~:N, N:M or @N:M, e.g. 10 or 5:20)")
        };
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(bad("empty"));
        }
        let num = |s: &str| -> Result<f64, String> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(&format!("`{s}` is not a number")))
        };
        let (start, end) = match body.split_once(':') {
            None => (0.0, num(body)?),
            Some((s, e)) => {
                let start = match s {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    s => num(s)?,
                };
                let end = if e.is_empty() { f64::INFINITY } else { num(e)? };
                (start, end)
            }
        };
        if start > end {
            return Err(bad("the start is greater than the end"));
        }
        Ok(Range {
            start,
            end,
            inside,
            text: text.to_string(),
        })
    }

    /// Whether `v` raises the alert this range stands for.
    pub fn alerts(&self, v: f64) -> bool {
        let within = self.start <= v && v <= self.end;
        within == self.inside
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(r: &str, v: f64) -> bool {
        Range::parse(r).unwrap().alerts(v)
    }

    #[test]
    fn the_guidelines_examples() {
        // 10: alert outside 0..10
        assert!(!alerts("10", 0.0) && !alerts("10", 10.0));
        assert!(alerts("10", 10.5) && alerts("10", -1.0));
        // 10: alert below 10
        assert!(alerts("10:", 9.9) && !alerts("10:", 1e12));
        // ~:10: alert above 10
        assert!(!alerts("~:10", -1e12) && alerts("~:10", 11.0));
        // 10:20: alert outside
        assert!(alerts("10:20", 9.0) && !alerts("10:20", 15.0) && alerts("10:20", 21.0));
        // @10:20: alert inside, ends included
        assert!(alerts("@10:20", 10.0) && alerts("@10:20", 20.0) && !alerts("@10:20", 21.0));
        // 0: any value above zero
        assert!(!alerts("0", 0.0) && alerts("0", 1.0));
    }

    #[test]
    fn bad_ranges_are_refused_with_the_syntax() {
        for r in ["", "@", "x", "5:1", "1:y", "nan", "inf"] {
            let e = Range::parse(r).unwrap_err();
            assert!(e.contains("use N, N:"), "{r}: {e}");
        }
        assert_eq!(Range::parse("@1:2").unwrap().to_string(), "@1:2");
    }
}
