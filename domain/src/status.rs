//! Every status of the seed as an enum, stored and shown by its SCREAMING_SNAKE name.

use serde::{Deserialize, Serialize};

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// The seed's `sell_window_quota.status`.
    QuotaStatus { Open => "OPEN", Closed => "CLOSED" }
);
status_enum!(
    /// The aggregator counter's status: only the change OPEN → REACHED is announced.
    ThresholdStatus { Open => "OPEN", Reached => "REACHED" }
);
status_enum!(BatchStatus { Pending => "PENDING", Confirmed => "CONFIRMED" });
status_enum!(OrderStatus {
    Reserved => "RESERVED",
    PaymentRequested => "PAYMENT_REQUESTED",
    Paid => "PAID",
    Expired => "EXPIRED",
    Cancelled => "CANCELLED",
});
status_enum!(PaymentStatus {
    Init => "INIT",
    Succeeded => "SUCCEEDED",
    Failed => "FAILED",
    Expired => "EXPIRED",
    Refunded => "REFUNDED",
});
status_enum!(PaymentOutcome { Succeeded => "succeeded", Failed => "failed", Expired => "expired" });
status_enum!(WorkOrderStatus { Ready => "READY", Completed => "COMPLETED" });
status_enum!(StepStatus { Todo => "TODO", Done => "DONE" });
status_enum!(MinPaidPolicy { ProduceWhatWasPaid => "PRODUCE_PAID", CancelAndRefund => "CANCEL_AND_REFUND" });
status_enum!(
    /// Where a listing is in its life. OPEN and CONFIRMED accept reservations.
    Phase {
        Open => "OPEN",
        Confirmed => "CONFIRMED",
        InProduction => "IN_PRODUCTION",
        Shipped => "SHIPPED",
        NothingToProduce => "NOTHING_TO_PRODUCE",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
);

impl OrderStatus {
    /// Orders in these statuses hold quota (count in `sold_qty`).
    pub fn holds_quota(self) -> bool {
        matches!(self, Self::Reserved | Self::PaymentRequested | Self::Paid)
    }
    /// Orders in these statuses count in the aggregator's `reserved_qty`.
    pub fn counts_as_reserved(self) -> bool {
        matches!(self, Self::Reserved | Self::PaymentRequested)
    }
}

impl Phase {
    pub fn accepts_reservations(self) -> bool {
        matches!(self, Self::Open | Self::Confirmed)
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Shipped | Self::NothingToProduce | Self::Failed | Self::Cancelled
        )
    }
}
