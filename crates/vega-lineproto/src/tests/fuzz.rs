//! Generated input: garbage and mutated lines must never panic and must
//! give exactly one result per content line; generated valid points must
//! survive a write-then-parse round trip.

use vega_core::{FieldValue, Point};

use crate::{parse, Parsed, ParsedPoint, Precision};

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that matter to the grammar, drawn more often than the others.
const INTERESTING: &[u8] = b" ,=\"\\\n\r\t#tTfFiu0123456789.-+eEmx";

/// The line numbers that the parser must answer for: neither blank nor a
/// comment once a trailing `\r` and leading spaces and tabs are removed.
fn content_lines(body: &[u8]) -> Vec<usize> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let first = raw.iter().find(|&&b| b != b' ' && b != b'\t');
            match first {
                None | Some(b'#') => None,
                Some(_) => Some(i + 1),
            }
        })
        .collect()
}

/// Parses `body` and checks the invariants that hold for any input.
fn check(body: &[u8]) -> Parsed {
    let parsed = parse(body, Precision::Seconds, 0);
    let mut answered: Vec<usize> = parsed
        .points
        .iter()
        .map(|p| p.line)
        .chain(parsed.errors.iter().map(|e| e.line))
        .collect();
    answered.sort_unstable();
    assert_eq!(
        answered,
        content_lines(body),
        "body: {:?}",
        String::from_utf8_lossy(body)
    );
    for e in &parsed.errors {
        assert!(!e.message.is_empty());
        assert!(e.message.len() < 2_000, "unbounded message: {}", e.message);
        assert!(e.to_string().starts_with(&format!("line {}: ", e.line)));
    }
    for p in &parsed.points {
        assert!(!p.measurement.is_empty());
        assert!(!p.point.fields.is_empty());
    }
    parsed
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let len = rng.below(160);
        let body: Vec<u8> = (0..len)
            .map(|_| {
                if rng.chance(75) {
                    *rng.pick(INTERESTING)
                } else {
                    rng.next() as u8
                }
            })
            .collect();
        check(&body);
    }
}

#[test]
fn mutated_valid_lines_never_panic() {
    let seeds: &[&[u8]] = &[
        b"cpu,cpu=cpu0,host=h usage_idle=98.1,usage_user=1.2 1700000000",
        b"disk,device=sda1,path=/ free=1i,used_percent=42.5,n=3u 1700000000",
        b"system,host=h uptime_format=\"1 day,  2:03\",ok=true 1700000000",
        b"my\\ m,tag\\ k=v\\,1 s=\"a\\\"b\\\\\",f=-1.5e3 -5",
        b"m,t=\xc3\xa9 f=\"\xf0\x9f\x9a\x80\"",
    ];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..20_000 {
        let mut body = rng.pick(seeds).to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(body.len() + 1);
            let byte = if rng.chance(80) {
                *rng.pick(INTERESTING)
            } else {
                rng.next() as u8
            };
            match rng.below(3) {
                0 if at < body.len() => body[at] = byte,
                1 if at < body.len() => {
                    body.remove(at);
                }
                _ => body.insert(at, byte),
            }
        }
        check(&body);
    }
}

#[test]
fn very_long_lines_are_handled() {
    let mut body = b"m ".to_vec();
    for i in 0..20_000 {
        body.extend_from_slice(format!("f{i}=1i,").as_bytes());
    }
    body.extend_from_slice(b"last=\"");
    body.extend(std::iter::repeat_n(b'\\', 50_000));
    let parsed = check(&body);
    assert_eq!(parsed.errors.len(), 1);
}

// Round trip.

fn escape(text: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Characters for generated names and strings, special ones included.
const CHARS: &[char] = &[
    'a', 'b', 'Z', '0', '_', '-', '.', ':', '/', ' ', ',', '=', '"', '\'', '\\', '#', 'é', '🚀',
    't', 'i', 'm', 'e', 'u',
];

fn text(rng: &mut Rng, max_len: usize) -> String {
    (0..1 + rng.below(max_len))
        .map(|_| *rng.pick(CHARS))
        .collect()
}

/// A name line protocol can carry: a trailing backslash would escape the
/// delimiter after it, so it gets a letter after it.
fn name(rng: &mut Rng, used: &mut Vec<String>) -> String {
    loop {
        let mut n = text(rng, 8);
        if n.ends_with('\\') {
            n.push('x');
        }
        if n != "time" && !used.contains(&n) {
            used.push(n.clone());
            return n;
        }
    }
}

fn field_value(rng: &mut Rng) -> (FieldValue, String) {
    match rng.below(5) {
        0 => loop {
            let v = f64::from_bits(rng.next());
            if v.is_finite() {
                break (FieldValue::Float(v), format!("{v:?}"));
            }
        },
        1 => {
            let v = rng.next() as i64;
            (FieldValue::Integer(v), format!("{v}i"))
        }
        2 => {
            let v = rng.next();
            (FieldValue::UInteger(v), format!("{v}u"))
        }
        3 => {
            let (v, written) =
                *rng.pick(&[(true, "t"), (true, "TRUE"), (false, "False"), (false, "f")]);
            (FieldValue::Boolean(v), written.to_string())
        }
        _ => {
            let s = if rng.chance(10) {
                String::new()
            } else {
                text(rng, 12)
            };
            let written = format!("\"{}\"", escape(&s, &['"', '\\']));
            (FieldValue::String(s), written)
        }
    }
}

#[test]
fn generated_points_survive_a_round_trip() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut body = String::new();
    let mut expected = Vec::new();
    for line in 1..=3_000 {
        if rng.chance(5) {
            body.push_str("# a comment\n");
            continue;
        }
        let mut measurement = text(&mut rng, 10);
        if measurement.ends_with('\\') {
            measurement.push('x');
        }
        if measurement.starts_with('#') {
            measurement.insert(0, 'm');
        }
        let mut written = escape(&measurement, &[',', ' ']);
        let mut used = Vec::new();
        let mut tags = Vec::new();
        for _ in 0..rng.below(4) {
            let key = name(&mut rng, &mut used);
            let value = name(&mut rng, &mut Vec::new());
            written.push_str(&format!(
                ",{}={}",
                escape(&key, &[',', '=', ' ']),
                escape(&value, &[',', '=', ' '])
            ));
            tags.push((key, value));
        }
        let mut fields = Vec::new();
        for i in 0..1 + rng.below(4) {
            let key = name(&mut rng, &mut used);
            let (value, value_text) = field_value(&mut rng);
            written.push(if i == 0 { ' ' } else { ',' });
            written.push_str(&format!("{}={value_text}", escape(&key, &[',', '=', ' '])));
            fields.push((key, value));
        }
        let time_ns = if rng.chance(80) {
            let t = (rng.next() as i64).clamp(crate::MIN_TIME_NS, crate::MAX_TIME_NS);
            written.push_str(&format!(" {t}"));
            t
        } else {
            -7
        };
        body.push_str(&written);
        body.push_str(if rng.chance(50) { "\n" } else { "\r\n" });
        expected.push(ParsedPoint {
            line,
            measurement,
            point: Point {
                tags,
                fields,
                time_ns,
            },
        });
    }
    let parsed = parse(body.as_bytes(), Precision::Nanoseconds, -7);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    assert_eq!(parsed.points.len(), expected.len());
    for (got, want) in parsed.points.iter().zip(&expected) {
        assert_eq!(got, want);
    }
}
