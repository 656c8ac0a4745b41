//! Named points in the sync path where a test can make Vega fail, to prove
//! that a crash between any two steps loses nothing and corrupts nothing.
//!
//! Set by the `VEGA_FAILPOINT` environment variable as `name=action`, e.g.
//! `sync.after_segments_written=abort`. Names: `sync.after_segments_written`,
//! `sync.after_checks`, `sync.after_publish`.

/// What happens when a failpoint is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Return an error; the sync cleans up after itself as after any error.
    Error,
    /// Return an error without any clean-up, as a crash would leave things.
    Crash,
    /// Abort the whole process at once (`kill -9` from inside).
    Abort,
}

/// One armed failpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failpoint {
    pub name: String,
    pub action: FailAction,
}

impl Failpoint {
    /// Parses `name=action`.
    pub fn parse(spec: &str) -> Option<Self> {
        let (name, action) = spec.split_once('=')?;
        let action = match action.trim() {
            "error" => FailAction::Error,
            "crash" => FailAction::Crash,
            "abort" => FailAction::Abort,
            _ => return None,
        };
        Some(Self {
            name: name.trim().to_string(),
            action,
        })
    }
}

/// Checks whether `name` is armed; aborts the process for `abort`.
pub(crate) fn hit(armed: &Option<Failpoint>, name: &str) -> Option<FailAction> {
    let fp = armed.as_ref().filter(|fp| fp.name == name)?;
    if fp.action == FailAction::Abort {
        tracing::error!(failpoint = name, "failpoint hit: aborting the process");
        std::process::abort();
    }
    Some(fp.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_action() {
        assert_eq!(
            Failpoint::parse("sync.after_publish=crash"),
            Some(Failpoint {
                name: "sync.after_publish".into(),
                action: FailAction::Crash
            })
        );
        assert_eq!(Failpoint::parse("sync.after_publish"), None);
        assert_eq!(Failpoint::parse("x=explode"), None);
    }
}
