//! The outcomes counted by `fibcache_claims_total` and `fibcache_computations_finished_total`,
//! each with the label it is counted under.

/// How a flight went about a claim on its key, as the `outcome` label of
/// `fibcache_claims_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// This instance claimed the key and computed.
    Won,
    /// Another instance held the claim; this one got the value from the store.
    Waited,
    /// Another instance held the claim, which lapsed or was given up without a value; this
    /// one claimed it and computed.
    TookOver,
    /// No tier offers claims: this instance computed, as without cluster coalescing.
    Unsupported,
    /// The store failed while claiming or waiting: this instance computed.
    Error,
    /// The key at the claim's name was not a live claim of the protocol (no lifetime, one
    /// longer than a claim's, or not renewed in time): this instance computed.
    Foreign,
    /// Another instance held the claim, and its value did not come within
    /// `--compute-timeout`: the waiters got 504.
    TimedOut,
    /// Another instance held the claim, and every local client left (or the server shut
    /// down) before its value came: this instance stopped waiting.
    Cancelled,
}

impl Claimed {
    pub(super) const ALL: [Claimed; 8] = [
        Claimed::Won,
        Claimed::Waited,
        Claimed::TookOver,
        Claimed::Unsupported,
        Claimed::Error,
        Claimed::Foreign,
        Claimed::TimedOut,
        Claimed::Cancelled,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Claimed::Won => "won",
            Claimed::Waited => "waited",
            Claimed::TookOver => "took_over",
            Claimed::Unsupported => "unsupported",
            Claimed::Error => "error",
            Claimed::Foreign => "foreign",
            Claimed::TimedOut => "timeout",
            Claimed::Cancelled => "cancelled",
        }
    }
}

/// How a computation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// It produced its number.
    Ok,
    /// Every waiting client went away, or the server shut down.
    Cancelled,
    /// It ran past `--compute-timeout`.
    Timeout,
    /// The workload panicked.
    Panicked,
}

impl Finished {
    pub(super) const ALL: [Finished; 4] = [
        Finished::Ok,
        Finished::Cancelled,
        Finished::Timeout,
        Finished::Panicked,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Finished::Ok => "ok",
            Finished::Cancelled => "cancelled",
            Finished::Timeout => "timeout",
            Finished::Panicked => "panicked",
        }
    }
}
