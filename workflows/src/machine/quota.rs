//! The rules of a listing's quota row, the arbiter of reservations: whether the listing takes
//! a reservation, whether units are left, the per-customer limit, the threshold and the quota's
//! status. Pure functions over what a writer reads under the listing's lock: the API's reserve
//! transaction decides reservations with [`reserve`], the workflow's writes move the row with
//! [`quota_status`] and check confirm with [`confirm_check`]; SQL only carries out what they
//! decide.

use sellwindow_domain::*;
use std::collections::BTreeMap;

/// A listing's terms that reservations are decided by (they never change once it is listed).
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    pub min_qty: u32,
    pub max_qty: u32,
    pub close_at: UnixMillis,
    pub payment_window_ms: i64,
    pub per_customer_limit: Option<u32>,
    pub unit_price: Money,
}

impl Terms {
    pub fn of(spec: &ListingSpec) -> Self {
        Self {
            min_qty: spec.min_qty,
            max_qty: spec.max_qty,
            close_at: spec.close_at,
            payment_window_ms: spec.payment_window_ms,
            per_customer_limit: spec.per_customer_limit,
            unit_price: spec.unit_price.clone(),
        }
    }

    /// `payment_due_at` of an order asked to pay at `now`: a payment window later, but never
    /// after close.
    pub fn payment_due(&self, now: UnixMillis) -> UnixMillis {
        now.plus_ms(self.payment_window_ms).min(self.close_at)
    }
}

/// The listing's quota row and counter as a writer finds them under the listing's lock, with
/// the fences the workflow wrote there (its phase, and whether it closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRow {
    pub phase: Phase,
    /// close_at came or the admin cancelled: no reservation and no payment from now on.
    pub closed: bool,
    pub sold: u32,
    pub reserved: u32,
    pub threshold_reached: bool,
}

impl QuotaRow {
    pub fn takes_reservations(&self) -> bool {
        self.phase.accepts_reservations() && !self.closed
    }
}

/// The seed's quota status: OPEN while the listing takes reservations and units are left.
pub fn quota_status(row: &QuotaRow, max_qty: u32) -> QuotaStatus {
    if row.takes_reservations() && row.sold < max_qty {
        QuotaStatus::Open
    } else {
        QuotaStatus::Closed
    }
}

/// The aggregator's rule: the threshold is reached once the reserved quantity reaches it, and
/// stays reached (only the change is announced).
pub fn threshold_reached(row: &QuotaRow, min_qty: u32) -> bool {
    row.threshold_reached || row.reserved >= min_qty
}

/// Whether the batch may be confirmed now, on the row's own figures (never on a copy that may
/// be older).
pub fn confirm_check(row: &QuotaRow, min_qty: u32) -> Result<(), Refusal> {
    if row.phase == Phase::Confirmed {
        return Ok(()); // a second confirm returns the same batch
    }
    if row.phase != Phase::Open || row.closed {
        return Err(Refusal::Closed { phase: row.phase });
    }
    if !threshold_reached(row, min_qty) {
        return Err(Refusal::ThresholdNotReached {
            reserved: row.reserved,
            min: min_qty,
        });
    }
    Ok(())
}

/// One reservation to decide: its order (the id follows from the customer's idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub qty: Qty,
}

/// What became of one reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Units taken: the order is written as this (after confirm, asked to pay at once).
    Take(NewOrder),
    Refuse(Refusal),
}

/// A batch of reservations decided on one listing's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Reserved {
    /// One per request, in order.
    pub decisions: Vec<Decision>,
    /// The row after the batch.
    pub row: QuotaRow,
    /// The order that took the last unit (`quota.closed`), if this batch filled the cap.
    pub filled_by: Option<OrderId>,
    /// This batch reached the threshold (`threshold.reached`, the admin told).
    pub reached_threshold: bool,
}

impl Reserved {
    pub fn taken(&self) -> impl Iterator<Item = &NewOrder> {
        self.decisions.iter().filter_map(|d| match d {
            Decision::Take(o) => Some(o),
            Decision::Refuse(_) => None,
        })
    }
}

/// Decides reservations in arrival order on the listing's row: refused when the listing
/// takes none (its phase, a close or cancel fenced in the row, or close_at passed), when too
/// few units are left, or past the per-customer limit (`held`: what each customer's orders in
/// the listing hold now); otherwise taken, moving the row. After confirm an order is asked to
/// pay at once.
pub fn reserve(
    terms: &Terms,
    row: &QuotaRow,
    requests: &[Request],
    held: &BTreeMap<CustomerId, u32>,
    now: UnixMillis,
) -> Reserved {
    let mut after = row.clone();
    let mut held = held.clone();
    let mut decisions = Vec::with_capacity(requests.len());
    let mut filled_by = None;
    let confirmed = row.phase == Phase::Confirmed;
    for r in requests {
        let decision = match refusal(terms, &after, &held, r, now) {
            Some(refusal) => Decision::Refuse(refusal),
            None => {
                let qty = r.qty.get();
                after.sold += qty;
                after.reserved += qty;
                *held.entry(r.customer_id.clone()).or_default() += qty;
                if after.sold == terms.max_qty {
                    filled_by = Some(r.order_id.clone());
                }
                Decision::Take(NewOrder {
                    order_id: r.order_id.clone(),
                    customer_id: r.customer_id.clone(),
                    qty: r.qty,
                    amount: terms.unit_price.times(qty),
                    status: if confirmed {
                        OrderStatus::PaymentRequested
                    } else {
                        OrderStatus::Reserved
                    },
                    payment_due_at: confirmed.then(|| terms.payment_due(now)),
                })
            }
        };
        decisions.push(decision);
    }
    let reached_threshold = !row.threshold_reached && threshold_reached(&after, terms.min_qty);
    after.threshold_reached = threshold_reached(&after, terms.min_qty);
    Reserved {
        decisions,
        row: after,
        filled_by,
        reached_threshold,
    }
}

fn refusal(
    terms: &Terms,
    row: &QuotaRow,
    held: &BTreeMap<CustomerId, u32>,
    r: &Request,
    now: UnixMillis,
) -> Option<Refusal> {
    if !row.takes_reservations() || now >= terms.close_at {
        return Some(Refusal::Closed { phase: row.phase });
    }
    let available = terms.max_qty.saturating_sub(row.sold);
    if r.qty.get() > available {
        return Some(Refusal::NotEnoughQuota { available });
    }
    if let Some(limit) = terms.per_customer_limit {
        let holds = held.get(&r.customer_id).copied().unwrap_or(0);
        if holds + r.qty.get() > limit {
            return Some(Refusal::CustomerLimit { limit, held: holds });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(max: u32, limit: Option<u32>) -> Terms {
        Terms {
            min_qty: 3,
            max_qty: max,
            close_at: UnixMillis(100_000),
            payment_window_ms: 10_000,
            per_customer_limit: limit,
            unit_price: Money::new(Currency::parse("TWD").unwrap(), 100).unwrap(),
        }
    }

    fn open() -> QuotaRow {
        QuotaRow {
            phase: Phase::Open,
            closed: false,
            sold: 0,
            reserved: 0,
            threshold_reached: false,
        }
    }

    fn request(n: u32, customer: &str, qty: u32) -> Request {
        Request {
            order_id: OrderId::parse(format!("o-{n}")).unwrap(),
            customer_id: CustomerId::parse(customer).unwrap(),
            qty: Qty::new(qty).unwrap(),
        }
    }

    #[test]
    fn units_are_taken_in_arrival_order_until_the_cap_and_never_past_it() {
        let requests = [request(1, "a", 2), request(2, "b", 2), request(3, "c", 1)];
        let r = reserve(
            &terms(4, None),
            &open(),
            &requests,
            &BTreeMap::new(),
            UnixMillis(0),
        );
        assert!(matches!(r.decisions[0], Decision::Take(_)));
        assert!(matches!(r.decisions[1], Decision::Take(_)));
        assert_eq!(
            r.decisions[2],
            Decision::Refuse(Refusal::NotEnoughQuota { available: 0 })
        );
        assert_eq!((r.row.sold, r.row.reserved), (4, 4));
        assert_eq!(r.filled_by, Some(requests[1].order_id.clone()));
        assert!(r.reached_threshold && r.row.threshold_reached);
        assert_eq!(quota_status(&r.row, 4), QuotaStatus::Closed);
        // Reached once: a later batch does not announce it again.
        let again = reserve(
            &terms(9, None),
            &r.row,
            &requests[2..],
            &BTreeMap::new(),
            UnixMillis(0),
        );
        assert!(!again.reached_threshold && again.row.threshold_reached);
    }

    #[test]
    fn the_per_customer_limit_counts_what_the_customer_holds_and_this_batch() {
        let held = BTreeMap::from([(CustomerId::parse("a").unwrap(), 1)]);
        let requests = [request(1, "a", 1), request(2, "a", 1), request(3, "b", 2)];
        let r = reserve(
            &terms(10, Some(2)),
            &open(),
            &requests,
            &held,
            UnixMillis(0),
        );
        assert!(matches!(r.decisions[0], Decision::Take(_)));
        assert_eq!(
            r.decisions[1],
            Decision::Refuse(Refusal::CustomerLimit { limit: 2, held: 2 })
        );
        assert!(matches!(r.decisions[2], Decision::Take(_)));
    }

    #[test]
    fn a_fenced_or_past_close_listing_refuses_and_after_confirm_orders_are_asked_to_pay() {
        let one = [request(1, "a", 1)];
        let closed = QuotaRow {
            closed: true,
            ..open()
        };
        let r = reserve(
            &terms(5, None),
            &closed,
            &one,
            &BTreeMap::new(),
            UnixMillis(0),
        );
        assert_eq!(
            r.decisions[0],
            Decision::Refuse(Refusal::Closed { phase: Phase::Open })
        );
        let late = reserve(
            &terms(5, None),
            &open(),
            &one,
            &BTreeMap::new(),
            UnixMillis(100_000),
        );
        assert!(matches!(late.decisions[0], Decision::Refuse(_)));
        let confirmed = QuotaRow {
            phase: Phase::Confirmed,
            ..open()
        };
        let r = reserve(
            &terms(5, None),
            &confirmed,
            &one,
            &BTreeMap::new(),
            UnixMillis(95_000),
        );
        let Decision::Take(o) = &r.decisions[0] else {
            panic!("taken")
        };
        assert_eq!(o.status, OrderStatus::PaymentRequested);
        assert_eq!(
            o.payment_due_at,
            Some(UnixMillis(100_000)),
            "never after close"
        );
    }

    #[test]
    fn confirm_needs_the_threshold_on_the_rows_own_figures() {
        let mut row = open();
        row.reserved = 2;
        assert_eq!(
            confirm_check(&row, 3),
            Err(Refusal::ThresholdNotReached {
                reserved: 2,
                min: 3
            })
        );
        row.reserved = 3;
        assert_eq!(confirm_check(&row, 3), Ok(()));
        row.closed = true;
        assert!(confirm_check(&row, 3).is_err());
        row.phase = Phase::Confirmed;
        assert_eq!(confirm_check(&row, 3), Ok(()), "a second confirm");
    }
}
