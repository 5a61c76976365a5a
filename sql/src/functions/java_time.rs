//! Date and time patterns as Flink writes them: Java's `DateTimeFormatter`
//! letters (`yyyy-MM-dd HH:mm:ss.SSS`), compiled once per pattern, to
//! format a timestamp and to parse one.
//!
//! The session time zone is UTC, so zone letters print `Z`, `+0000` or
//! `UTC`; a parsed offset is applied to give the UTC instant.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// One field of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    /// A letter repeated `count` times.
    Field(char, usize),
    /// `[..]`: printed, and optional when parsing.
    Optional(Vec<Piece>),
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct JavaPattern {
    pieces: Vec<Piece>,
}

impl JavaPattern {
    /// `yyyy-MM-dd HH:mm:ss`, Flink's default.
    pub fn default_timestamp() -> JavaPattern {
        JavaPattern::compile("yyyy-MM-dd HH:mm:ss").expect("a valid pattern")
    }

    /// Compiles a pattern; an unknown letter or an unclosed quote is an error.
    pub fn compile(pattern: &str) -> Result<JavaPattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        let pieces = compile_until(&chars, &mut i, 0)?;
        Ok(JavaPattern { pieces })
    }

    /// The timestamp in the pattern.
    pub fn format(&self, t: &NaiveDateTime) -> String {
        let mut out = String::new();
        format_pieces(&self.pieces, t, &mut out);
        out
    }

    /// Parses the whole of `text`; missing fields default to 1970-01-01
    /// 00:00:00, as Flink's do. A parsed zone offset gives the UTC time.
    pub fn parse(&self, text: &str) -> Option<NaiveDateTime> {
        let mut fields = Parsed::default();
        let rest = parse_pieces(&self.pieces, text, &mut fields)?;
        if !rest.is_empty() {
            return None;
        }
        fields.resolve()
    }
}

/// How deep `[..]` sections may nest (a pattern may come from a client).
const MAX_NESTING: usize = 4;

/// The pieces up to the end, or up to the `]` closing a section `depth`
/// levels deep.
fn compile_until(chars: &[char], i: &mut usize, depth: usize) -> Result<Vec<Piece>, String> {
    let in_optional = depth > 0;
    let mut pieces = Vec::new();
    while *i < chars.len() {
        let c = chars[*i];
        if c.is_ascii_alphabetic() {
            if !"GyuMLdDHhkKmsSaEXxZzn".contains(c) {
                return Err(format!("unknown pattern letter '{c}'"));
            }
            let mut count = 1;
            while *i + count < chars.len() && chars[*i + count] == c {
                count += 1;
            }
            pieces.push(Piece::Field(c, count));
            *i += count;
        } else if c == '\'' {
            // 'text', and '' for a quote.
            if chars.get(*i + 1) == Some(&'\'') {
                pieces.push(Piece::Literal("'".into()));
                *i += 2;
                continue;
            }
            let mut text = String::new();
            *i += 1;
            loop {
                match chars.get(*i) {
                    None => return Err("the pattern has an unclosed quote".into()),
                    Some('\'') if chars.get(*i + 1) == Some(&'\'') => {
                        text.push('\'');
                        *i += 2;
                    }
                    Some('\'') => {
                        *i += 1;
                        break;
                    }
                    Some(&ch) => {
                        text.push(ch);
                        *i += 1;
                    }
                }
            }
            pieces.push(Piece::Literal(text));
        } else if c == '[' {
            if depth == MAX_NESTING {
                return Err(format!(
                    "optional sections nest more than {MAX_NESTING} deep"
                ));
            }
            *i += 1;
            pieces.push(Piece::Optional(compile_until(chars, i, depth + 1)?));
        } else if c == ']' {
            if !in_optional {
                return Err("the pattern closes an optional section it never opened".into());
            }
            *i += 1;
            return Ok(pieces);
        } else {
            pieces.push(Piece::Literal(c.to_string()));
            *i += 1;
        }
    }
    if in_optional {
        return Err("the pattern has an unclosed optional section".into());
    }
    Ok(pieces)
}

fn pad(out: &mut String, value: i64, width: usize) {
    if value < 0 {
        out.push('-');
    }
    let digits = value.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

fn format_pieces(pieces: &[Piece], t: &NaiveDateTime, out: &mut String) {
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Optional(inner) => format_pieces(inner, t, out),
            Piece::Field(c, n) => {
                let n = *n;
                match c {
                    'G' => out.push_str(if t.year() > 0 { "AD" } else { "BC" }),
                    'y' | 'u' if n == 2 => pad(out, (t.year() % 100).into(), 2),
                    'y' | 'u' => pad(out, t.year().into(), n),
                    'M' | 'L' if n >= 4 => out.push_str(MONTHS[t.month0() as usize]),
                    'M' | 'L' if n == 3 => out.push_str(&MONTHS[t.month0() as usize][..3]),
                    'M' | 'L' => pad(out, t.month().into(), n),
                    'd' => pad(out, t.day().into(), n),
                    'D' => pad(out, t.ordinal().into(), n),
                    'H' => pad(out, t.hour().into(), n),
                    'k' => pad(out, if t.hour() == 0 { 24 } else { t.hour() }.into(), n),
                    'K' => pad(out, (t.hour() % 12).into(), n),
                    'h' => pad(
                        out,
                        (if t.hour() % 12 == 0 {
                            12
                        } else {
                            t.hour() % 12
                        })
                        .into(),
                        n,
                    ),
                    'm' => pad(out, t.minute().into(), n),
                    's' => pad(out, t.second().into(), n),
                    'S' => {
                        let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                        let mut digits = nanos[..n.min(9)].to_string();
                        while digits.len() < n {
                            digits.push('0');
                        }
                        out.push_str(&digits);
                    }
                    'n' => pad(out, (t.nanosecond() % 1_000_000_000).into(), n),
                    'a' => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
                    'E' if n >= 4 => {
                        out.push_str(DAYS[t.weekday().num_days_from_monday() as usize])
                    }
                    'E' => out.push_str(&DAYS[t.weekday().num_days_from_monday() as usize][..3]),
                    'X' => out.push_str("Z"),
                    'x' if n == 1 => out.push_str("+00"),
                    'x' if n == 2 || n == 4 => out.push_str("+0000"),
                    'x' => out.push_str("+00:00"),
                    'Z' if n >= 4 => out.push_str("GMT"),
                    'Z' => out.push_str("+0000"),
                    'z' => out.push_str("UTC"),
                    _ => {}
                }
            }
        }
    }
}

/// Fields read so far.
#[derive(Default, Clone)]
struct Parsed {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: Option<u32>,
    hour12: Option<u32>,
    pm: Option<bool>,
    minute: Option<u32>,
    second: Option<u32>,
    nanos: Option<u32>,
    offset_seconds: Option<i32>,
}

impl Parsed {
    fn resolve(&self) -> Option<NaiveDateTime> {
        let year = self.year.unwrap_or(1970);
        let date = match self.day_of_year {
            Some(doy) if self.month.is_none() => NaiveDate::from_yo_opt(year, doy)?,
            _ => NaiveDate::from_ymd_opt(year, self.month.unwrap_or(1), self.day.unwrap_or(1))?,
        };
        let hour = match (self.hour, self.hour12, self.pm) {
            (Some(h), _, _) => h,
            (None, Some(h), pm) => h % 12 + if pm == Some(true) { 12 } else { 0 },
            (None, None, Some(true)) => 12,
            _ => 0,
        };
        let time = NaiveTime::from_hms_nano_opt(
            hour,
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0),
            self.nanos.unwrap_or(0),
        )?;
        let local = NaiveDateTime::new(date, time);
        match self.offset_seconds {
            Some(offset) => local.checked_sub_signed(chrono::TimeDelta::seconds(offset.into())),
            None => Some(local),
        }
    }
}

/// Reads `min..=max` ASCII digits (an optional sign first when `signed`).
fn digits(text: &str, min: usize, max: usize, signed: bool) -> Option<(i64, &str)> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') if signed => (true, &text[1..]),
        Some(b'+') if signed => (false, &text[1..]),
        _ => (false, text),
    };
    let len = body
        .bytes()
        .take(max)
        .take_while(u8::is_ascii_digit)
        .count();
    if len < min {
        return None;
    }
    let value: i64 = body[..len].parse().ok()?;
    Some((if negative { -value } else { value }, &body[len..]))
}

fn word<'a>(text: &'a str, options: &[&str]) -> Option<(usize, &'a str)> {
    options.iter().enumerate().find_map(|(i, o)| {
        (text.len() >= o.len() && text[..o.len()].eq_ignore_ascii_case(o))
            .then(|| (i, &text[o.len()..]))
    })
}

fn parse_pieces<'a>(pieces: &[Piece], mut text: &'a str, f: &mut Parsed) -> Option<&'a str> {
    for (index, piece) in pieces.iter().enumerate() {
        // A numeric field followed by another numeric field takes exactly
        // its width (`yyyyMMdd`).
        let adjacent = matches!(pieces.get(index + 1), Some(Piece::Field(c, _)) if "yuMLdDHhkKmsSn".contains(*c));
        match piece {
            Piece::Literal(lit) => {
                text = text.strip_prefix(lit.as_str())?;
            }
            Piece::Optional(inner) => {
                let mut attempt = f.clone();
                if let Some(rest) = parse_pieces(inner, text, &mut attempt) {
                    *f = attempt;
                    text = rest;
                }
            }
            Piece::Field(c, n) => {
                let n = *n;
                let width = |min: usize| {
                    if n >= 2 || adjacent {
                        (n.max(min), n.max(min))
                    } else {
                        (1, 2)
                    }
                };
                text = match c {
                    'G' => word(text, &["AD", "BC"])?.1,
                    'y' | 'u' if n == 2 => {
                        let (v, rest) = digits(text, 2, 2, false)?;
                        f.year = Some(2000 + v as i32);
                        rest
                    }
                    'y' | 'u' => {
                        let max = if adjacent { n.max(4) } else { 9 };
                        let (v, rest) = digits(text, n.min(4), max, !adjacent)?;
                        f.year = Some(i32::try_from(v).ok()?);
                        rest
                    }
                    'M' | 'L' if n >= 3 => {
                        let names: Vec<&str> = if n >= 4 {
                            MONTHS.to_vec()
                        } else {
                            MONTHS.iter().map(|m| &m[..3]).collect()
                        };
                        let (i, rest) = word(text, &names)?;
                        f.month = Some(i as u32 + 1);
                        rest
                    }
                    'E' => {
                        let names: Vec<&str> = if n >= 4 {
                            DAYS.to_vec()
                        } else {
                            DAYS.iter().map(|d| &d[..3]).collect()
                        };
                        word(text, &names)?.1
                    }
                    'a' => {
                        let (i, rest) = word(text, &["AM", "PM"])?;
                        f.pm = Some(i == 1);
                        rest
                    }
                    'S' => {
                        let (v, rest) = digits(text, n, n, false)?;
                        let scale = 10u32.pow(9u32.saturating_sub(n as u32));
                        f.nanos = Some((v as u32).checked_mul(scale)?);
                        rest
                    }
                    'X' | 'x' | 'Z' => {
                        if let Some(rest) = text.strip_prefix('Z').filter(|_| *c == 'X') {
                            f.offset_seconds = Some(0);
                            rest
                        } else {
                            let sign = match text.as_bytes().first()? {
                                b'+' => 1,
                                b'-' => -1,
                                _ => return None,
                            };
                            let (hours, rest) = digits(&text[1..], 2, 2, false)?;
                            let rest = rest.strip_prefix(':').unwrap_or(rest);
                            let (minutes, rest) = digits(rest, 2, 2, false).unwrap_or((0, rest));
                            f.offset_seconds = Some(sign * (hours * 3600 + minutes * 60) as i32);
                            rest
                        }
                    }
                    'z' => {
                        let (_, rest) = word(text, &["UTC", "GMT", "Z"])?;
                        f.offset_seconds = Some(0);
                        rest
                    }
                    _ => {
                        let (min, max) = if *c == 'D' && n < 2 && !adjacent {
                            (1, 3)
                        } else {
                            width(1)
                        };
                        let max = if *c == 'n' { 9 } else { max };
                        let (v, rest) = digits(text, min, max, false)?;
                        let v = u32::try_from(v).ok()?;
                        match c {
                            'M' | 'L' => f.month = Some(v),
                            'd' => f.day = Some(v),
                            'D' => f.day_of_year = Some(v),
                            'H' => f.hour = Some(v),
                            'k' => f.hour = Some(v % 24),
                            'K' | 'h' => f.hour12 = Some(v),
                            'm' => f.minute = Some(v),
                            's' => f.second = Some(v),
                            'n' => f.nanos = Some(v),
                            _ => return None,
                        }
                        rest
                    }
                };
            }
        }
    }
    Some(text)
}

/// Flink's lenient default for a timestamp string:
/// `yyyy-[M]M-[d]d[ [H]H:[m]m:[s]s[.fraction]]`, also with a `T`.
pub fn parse_default_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let (year, rest) = digits(text, 4, 4, false)?;
    let rest = rest.strip_prefix('-')?;
    let (month, rest) = digits(rest, 1, 2, false)?;
    let rest = rest.strip_prefix('-')?;
    let (day, rest) = digits(rest, 1, 2, false)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    if rest.is_empty() {
        return Some(date.and_hms_opt(0, 0, 0)?);
    }
    let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T'))?;
    let (hour, rest) = digits(rest, 1, 2, false)?;
    let rest = rest.strip_prefix(':')?;
    let (minute, rest) = digits(rest, 1, 2, false)?;
    let (second, rest) = match rest.strip_prefix(':') {
        Some(r) => digits(r, 1, 2, false)?,
        None => (0, rest),
    };
    let nanos = match rest.strip_prefix('.') {
        Some(fraction) => {
            let (v, tail) = digits(fraction, 1, 9, false)?;
            if !tail.is_empty() {
                return None;
            }
            let width = fraction.len() as u32;
            v as u32 * 10u32.pow(9 - width)
        }
        None if rest.is_empty() => 0,
        None => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(hour as u32, minute as u32, second as u32, nanos)?;
    Some(NaiveDateTime::new(date, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn formats_java_patterns() {
        let t = at("2020-03-07 14:05:09.123456");
        let cases = [
            ("yyyy-MM-dd", "2020-03-07"),
            ("yyyy-MM-dd HH:mm:ss", "2020-03-07 14:05:09"),
            ("yyyy-MM-dd HH:mm:ss.SSS", "2020-03-07 14:05:09.123"),
            ("yy/M/d h:mm a", "20/3/7 2:05 PM"),
            ("EEE, d MMM yyyy", "Sat, 7 Mar 2020"),
            ("EEEE MMMM", "Saturday March"),
            ("yyyyMMddHHmm", "202003071405"),
            ("'at' HH'h''s'", "at 14h's"),
            ("D", "67"),
            ("SSSSSS", "123456"),
            ("yyyy-MM-dd'T'HH:mm:ssXXX", "2020-03-07T14:05:09Z"),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                JavaPattern::compile(pattern).unwrap().format(&t),
                expected,
                "{pattern}"
            );
        }
    }

    #[test]
    fn parses_java_patterns() {
        let cases = [
            (
                "yyyy-MM-dd HH:mm:ss",
                "2020-03-07 14:05:09",
                "2020-03-07 14:05:09",
            ),
            ("yyyyMMddHHmmss", "20200307140509", "2020-03-07 14:05:09"),
            ("dd/MM/yyyy", "07/03/2020", "2020-03-07 00:00:00"),
            (
                "yyyy-MM-dd HH:mm:ss.SSS",
                "2020-03-07 14:05:09.120",
                "2020-03-07 14:05:09.12",
            ),
            ("HH:mm", "10:30", "1970-01-01 10:30:00"),
            (
                "yyyy-MM-dd HH:mm:ss.SSS X",
                "1970-01-01 08:00:01.001 +0800",
                "1970-01-01 00:00:01.001",
            ),
            (
                "d MMM yyyy h:mm a",
                "7 Mar 2020 2:05 PM",
                "2020-03-07 14:05:00",
            ),
            ("yyyy-MM-dd[ HH:mm]", "2020-03-07", "2020-03-07 00:00:00"),
        ];
        for (pattern, text, expected) in cases {
            let parsed = JavaPattern::compile(pattern).unwrap().parse(text);
            assert_eq!(parsed, Some(at(expected)), "{pattern} on {text}");
        }
        let bad = [
            ("yyyy-MM-dd", "2020-13-01"),
            ("yyyy-MM-dd", "2020-03-07 x"),
            ("HH:mm", "25:00"),
        ];
        for (pattern, text) in bad {
            assert_eq!(
                JavaPattern::compile(pattern).unwrap().parse(text),
                None,
                "{pattern} on {text}"
            );
        }
        assert!(JavaPattern::compile("yyyy-MM-dd 'unclosed").is_err());
        assert!(JavaPattern::compile("yyyy-qq").is_err());
        assert!(JavaPattern::compile(&"[".repeat(100_000)).is_err());
        assert!(JavaPattern::compile("[[[[y]]]]").is_ok());
    }

    #[test]
    fn parses_flinks_default_timestamp_leniently() {
        assert_eq!(
            parse_default_timestamp("2020-3-7"),
            Some(at("2020-03-07 00:00:00"))
        );
        assert_eq!(
            parse_default_timestamp("2020-03-07 1:2:3"),
            Some(at("2020-03-07 01:02:03"))
        );
        assert_eq!(
            parse_default_timestamp("2020-03-07T01:02:03.5"),
            Some(at("2020-03-07 01:02:03.5"))
        );
        assert_eq!(
            parse_default_timestamp("2020-03-07 01:02"),
            Some(at("2020-03-07 01:02:00"))
        );
        assert_eq!(parse_default_timestamp("07.03.2020"), None);
        assert_eq!(parse_default_timestamp("2020-03-07 01:02:03x"), None);
    }
}
