//! How a listing's workflow starts: fresh from its spec, or carrying what the previous run
//! handed over (continue-as-new). What travels does not grow with the listing's orders: the
//! listing's figures and phases (payment outcomes that arrive meanwhile wait in the inbox,
//! which the next run reads first).

use crate::machine::Listing;
use sellwindow_domain::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingRun {
    #[serde(flatten)]
    pub spec: ListingSpec,
    #[serde(default)]
    pub tuning: Tuning,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Carried>,
}

impl From<ListingSpec> for ListingRun {
    fn from(spec: ListingSpec) -> Self {
        Self {
            spec,
            tuning: Tuning::default(),
            carried: None,
        }
    }
}

/// Deployment tuning, passed from run to run (tests make the numbers small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuning {
    /// Orders per sweep chunk (one write each).
    pub sweep_chunk: u32,
    /// A run hands over to the next once its history has this many events (the server warns
    /// at 10,240 and ends a run at 51,200), or the server suggests it.
    pub handover_events: u32,
    /// ... or once it has taken this many updates (the server takes 2,000 per run): admins'
    /// and customers' calls about orders.
    pub handover_updates: u32,
    /// ... or this many signals (the server takes 10,000 a run, and cannot end a run while
    /// signals keep arriving: the fewer a run takes, the sooner it can end).
    #[serde(default = "default_handover_signals")]
    pub handover_signals: u32,
}

fn default_handover_signals() -> u32 {
    5_000
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            sweep_chunk: 1_000,
            handover_events: 8_000,
            handover_updates: 1_000,
            handover_signals: default_handover_signals(),
        }
    }
}

/// What one run hands to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub listing: Listing,
    /// When the listing, finished, stops waiting for late payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_until: Option<UnixMillis>,
    /// Runs before this one.
    pub runs: u32,
    /// Why the previous run handed over.
    pub reason: HandOver,
}

/// Why a run hands over to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandOver {
    /// Its history reached [`Tuning::handover_events`].
    Events,
    /// The server suggested it (the history's size).
    Suggested,
    Updates,
    Signals,
}

impl HandOver {
    pub const ALL: &'static [HandOver] = &[
        HandOver::Events,
        HandOver::Suggested,
        HandOver::Updates,
        HandOver::Signals,
    ];
}
