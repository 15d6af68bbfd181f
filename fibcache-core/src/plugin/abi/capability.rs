//! The optional capabilities of the [`Cache`] trait as they cross: which ones an instance
//! offers, and the answers of their operations, each mapping written once for both sides.
//!
//! An operation of a capability answers through the same [`Done`](super::Done) callback as
//! `get` and `set`:
//! - `claim`, `renew` and `release_claim` answer [`Status::OK`] for `true` and
//!   [`Status::ABSENT`] for `false` ([`answer_of_bool`]);
//! - `remaining` answers [`Status::ABSENT`] for `None` and [`Status::OK`] with the time left
//!   as a decimal number of nanoseconds ([`remaining_to_text`], [`remaining_from_text`]),
//!   saturated at `u64::MAX` (584 years).

use std::time::Duration;

use super::Status;
use crate::Cache;

/// Which optional capabilities one instance offers, as bits; what
/// [`PluginApi::capabilities`](super::PluginApi::capabilities) answers. A bit this host does
/// not know is ignored, so a later capability needs no ABI bump either.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capabilities(u32);

impl Capabilities {
    /// No capability: what a plugin without the `capabilities` entry offers.
    pub(crate) const NONE: Capabilities = Capabilities(0);
    /// [`Cache::expiry`] is `Some`.
    const EXPIRY: u32 = 1;
    /// [`Cache::claims`] is `Some`.
    const CLAIMS: u32 = 1 << 1;

    /// What `cache` offers.
    pub(crate) fn of(cache: &dyn Cache) -> Capabilities {
        let expiry = if cache.expiry().is_some() {
            Self::EXPIRY
        } else {
            0
        };
        let claims = if cache.claims().is_some() {
            Self::CLAIMS
        } else {
            0
        };
        Capabilities(expiry | claims)
    }

    /// Whether [`Expiry`](crate::Expiry) is offered.
    pub(crate) fn expiry(self) -> bool {
        self.0 & Self::EXPIRY != 0
    }

    /// Whether [`Claims`](crate::Claims) is offered.
    pub(crate) fn claims(self) -> bool {
        self.0 & Self::CLAIMS != 0
    }

    /// Only what `self` and `other` both say.
    pub(crate) fn and(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }

    /// The capabilities whose entries a function table has.
    pub(crate) fn with_entries(expiry: bool, claims: bool) -> Capabilities {
        Capabilities(if expiry { Self::EXPIRY } else { 0 } | if claims { Self::CLAIMS } else { 0 })
    }
}

/// The status a claim operation's `bool` crosses as.
pub(crate) fn answer_of_bool(yes: bool) -> Status {
    if yes {
        Status::OK
    } else {
        Status::ABSENT
    }
}

/// The text a [`Status::OK`] answer of `remaining` carries.
pub(crate) fn remaining_to_text(left: Duration) -> String {
    u64::try_from(left.as_nanos())
        .unwrap_or(u64::MAX)
        .to_string()
}

/// The time left that a [`Status::OK`] answer of `remaining` carries, or `None` when the text
/// is not a decimal number of nanoseconds (a broken plugin).
pub(crate) fn remaining_from_text(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lifetimes_cross_to_the_nanosecond_and_saturate() {
        for left in [Duration::ZERO, Duration::new(14, 999_999_999)] {
            assert_eq!(remaining_from_text(&remaining_to_text(left)), Some(left));
        }
        assert_eq!(remaining_to_text(Duration::MAX), u64::MAX.to_string());
        for bad in ["", "-1", "1.5", " 1", "18446744073709551616"] {
            assert_eq!(remaining_from_text(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unknown_bits_are_ignored_and_entries_mask_what_an_instance_says() {
        let all = Capabilities(u32::MAX);
        assert!(all.expiry() && all.claims());
        let table = Capabilities::with_entries(true, false);
        assert!(all.and(table).expiry());
        assert!(!all.and(table).claims());
        assert_eq!(Capabilities::NONE.and(all), Capabilities::NONE);
    }
}
