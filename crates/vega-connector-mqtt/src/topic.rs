//! MQTT topic filters: validation and matching as the MQTT specification
//! (3.1.1 §4.7, 5.0 §4.7) defines them.
//!
//! A filter is a `/`-separated list of levels. `+` matches exactly one
//! level and must be alone in its level; `#` matches any number of levels,
//! including none (so `a/#` matches `a`), and must be alone in the last
//! level. Levels may be empty (`a//b`). A filter that starts with a
//! wildcard does not match topics starting with `$` (`$SYS/…`): those are
//! the broker's own.

use std::fmt;

/// The longest topic or filter MQTT can carry (a length-prefixed string).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// A checked topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
}

impl TopicFilter {
    /// Checks `text` against the specification's rules. The error says
    /// what is wrong (without naming a field).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > MAX_TOPIC_LEN {
            return Err(format!("must be at most {MAX_TOPIC_LEN} bytes"));
        }
        if text.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        if text.starts_with("$share/") {
            return Err("shared subscriptions ($share/…) are not supported".into());
        }
        let levels: Vec<&str> = text.split('/').collect();
        let last = levels.len() - 1;
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i != last) {
                return Err(format!(
                    "'#' must be alone in the last level (level {} is '{level}')",
                    i + 1
                ));
            }
            if level.contains('+') && *level != "+" {
                return Err(format!(
                    "'+' must be alone in its level (level {} is '{level}')",
                    i + 1
                ));
            }
        }
        Ok(TopicFilter {
            text: text.to_string(),
        })
    }

    /// The filter as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The filter's levels.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.text.split('/')
    }

    /// Whether the topic name `topic` (no wildcards) matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        matches(&self.text, topic)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether the topic name `topic` matches the (valid) filter `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` matches the rest, including nothing (`a/#` matches `a`).
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic the (valid) filter `specific` matches is also
/// matched by the (valid) filter `general`.
pub fn covers(general: &str, specific: &str) -> bool {
    // A wildcard at the first level does not match `$` topics, which a
    // literal `$…` first level does.
    let general_wild_first = general.starts_with('+') || general.starts_with('#');
    if general_wild_first && specific.starts_with('$') {
        return false;
    }
    let mut g_levels = general.split('/');
    let mut s_levels = specific.split('/');
    loop {
        match (g_levels.next(), s_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(s)) if s != "#" => {}
            (Some(g), Some(s)) if g != "+" && g != "#" && g == s && s != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text).unwrap()
    }

    #[test]
    fn valid_filters_are_accepted() {
        for text in [
            "a", "a/b/c", "#", "+", "a/+/c", "a/#", "+/+/#", "/", "a//b", "/a", "$SYS/#",
        ] {
            assert!(TopicFilter::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn invalid_filters_are_refused_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("a/#/b", "'#'"),
            ("a#", "'#'"),
            ("a/b#", "'#'"),
            ("#/", "'#'"),
            ("a+", "'+'"),
            ("a/+b/c", "'+'"),
            ("a/b\0", "NUL"),
            ("$share/group/a/b", "shared"),
        ] {
            let err = TopicFilter::parse(text).unwrap_err();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        let f = filter("plant/+/temp");
        assert!(f.matches("plant/a/temp"));
        assert!(f.matches("plant//temp"));
        assert!(!f.matches("plant/a/b/temp"));
        assert!(!f.matches("plant/temp"));
        assert!(filter("+").matches("a"));
        assert!(filter("+").matches(""));
        assert!(!filter("+").matches("a/b"));
        assert!(filter("+/+").matches("/a"));
        assert!(filter("a/+").matches("a/"));
    }

    #[test]
    fn hash_matches_the_rest_including_the_parent_level() {
        let f = filter("plant/#");
        assert!(f.matches("plant"));
        assert!(f.matches("plant/"));
        assert!(f.matches("plant/a"));
        assert!(f.matches("plant/a/b/c"));
        assert!(!f.matches("plants/a"));
        assert!(!f.matches("other"));
        assert!(filter("#").matches("a/b"));
        assert!(filter("#").matches("/"));
        assert!(filter("a/+/#").matches("a/b"));
        assert!(!filter("a/+/#").matches("a"));
    }

    #[test]
    fn literal_levels_match_exactly() {
        let f = filter("a/b");
        assert!(f.matches("a/b"));
        assert!(!f.matches("a/b/"));
        assert!(!f.matches("a"));
        assert!(!f.matches("A/b"));
        assert!(filter("/a").matches("/a"));
        assert!(!filter("/a").matches("a"));
    }

    #[test]
    fn covering_filters() {
        for (general, specific) in [
            ("#", "a/b"),
            ("#", "+/#"),
            ("a/#", "a"),
            ("a/#", "a/+/c"),
            ("a/#", "a/#"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("+/+", "a/+"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/x"),
        ] {
            assert!(covers(general, specific), "{general} covers {specific}");
        }
        for (general, specific) in [
            ("a/+", "a/#"),
            ("a/+", "a"),
            ("a/b", "a/+"),
            ("a/+/c", "a/b/+"),
            ("a", "a/#"),
            ("a/b", "a/b/c"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a/+/#", "a"),
        ] {
            assert!(
                !covers(general, specific),
                "{general} does not cover {specific}"
            );
        }
    }

    #[test]
    fn wildcards_at_the_first_level_do_not_match_dollar_topics() {
        assert!(!filter("#").matches("$SYS/broker/uptime"));
        assert!(!filter("+/broker/uptime").matches("$SYS/broker/uptime"));
        assert!(filter("$SYS/#").matches("$SYS/broker/uptime"));
        assert!(filter("$SYS/+/uptime").matches("$SYS/broker/uptime"));
        // Only the first level is special.
        assert!(filter("a/+").matches("a/$b"));
    }
}
