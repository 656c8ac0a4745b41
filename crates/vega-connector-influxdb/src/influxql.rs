//! Bits of InfluxQL and line protocol: quoting identifiers, checking that a
//! query source is one read-only `SELECT`, and building series keys.

/// An InfluxQL double-quoted identifier (backslash, quote and newline
/// escaped, as InfluxDB's own `QuoteIdent` does).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The words of `query` outside quotes, and whether it has a `;` outside
/// quotes. Quotes are `'…'` strings, `"…"` identifiers and `/…/` regexes,
/// each with backslash escapes.
fn scan(query: &str) -> (Vec<String>, bool) {
    let mut words: Vec<String> = Vec::new();
    let mut semicolon = false;
    let mut word = String::new();
    let mut chars = query.chars().peekable();
    // The last token: a word, or a punctuation character.
    let mut last: Option<String> = None;
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            last = Some(word.to_ascii_uppercase());
            words.push(std::mem::take(&mut word));
        }
        match c {
            '\'' | '"' => skip_quoted(&mut chars, c),
            // A regex where a name could stand; otherwise a division.
            '/' if matches!(
                last.as_deref(),
                None | Some("~" | "," | "(" | "SELECT" | "FROM" | "BY")
            ) =>
            {
                skip_quoted(&mut chars, '/')
            }
            ';' => semicolon = true,
            _ => {}
        }
        if !c.is_whitespace() {
            last = Some(c.to_string());
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    (words, semicolon)
}

fn skip_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, quote: char) {
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == quote {
            return;
        }
    }
}

/// Checks a query source: one `SELECT` statement that writes nothing.
pub fn check_select(query: &str) -> Result<(), String> {
    let (words, semicolon) = scan(query);
    match words.first() {
        Some(w) if w.eq_ignore_ascii_case("SELECT") => {}
        Some(w) => {
            return Err(format!(
                "must be a SELECT statement, not {}",
                w.to_uppercase()
            ))
        }
        None => return Err("must not be empty".into()),
    }
    if semicolon {
        return Err("must be a single statement (no ';')".into());
    }
    if words.iter().any(|w| w.eq_ignore_ascii_case("INTO")) {
        return Err("SELECT … INTO writes data and is not allowed".into());
    }
    Ok(())
}

/// The series key of a point as InfluxDB writes it in line protocol:
/// `measurement,tag1=v1,tag2=v2` with tags sorted by key, empty tag values
/// left out, and `,`, `=` and space escaped.
pub fn series_key<'a>(
    measurement: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut tags: Vec<(&str, &str)> = tags.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    tags.sort_unstable();
    let mut key = escape(measurement, &[',', ' ']);
    for (k, v) in tags {
        key.push(',');
        key.push_str(&escape(k, &[',', '=', ' ']));
        key.push('=');
        key.push_str(&escape(v, &[',', '=', ' ']));
    }
    key
}

fn escape(text: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("cpu"), "\"cpu\"");
        assert_eq!(quote_ident("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn only_single_read_only_selects_pass() {
        assert!(check_select("SELECT * FROM \"cpu\" WHERE host = 'a;b'").is_ok());
        assert!(check_select("select mean(x) from /cp;u/ group by time(1m)").is_ok());
        assert!(check_select("SELECT \"into\" FROM cpu").is_ok());
        assert!(check_select("DROP DATABASE x")
            .unwrap_err()
            .contains("SELECT"));
        assert!(check_select("SELECT * FROM a; DROP DATABASE x").is_err());
        assert!(check_select("SELECT * INTO b FROM a").is_err());
        assert!(check_select("   ").is_err());
    }

    #[test]
    fn series_keys_sort_and_escape_tags() {
        assert_eq!(
            series_key("cpu", [("region", "x y"), ("host", "a,b"), ("empty", "")]),
            "cpu,host=a\\,b,region=x\\ y"
        );
    }
}
