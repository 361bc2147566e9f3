//! Writes waiting for the run method. A handler decides in the listing at once, then queues
//! what must be persisted here and waits; the run method writes everything queued of one kind
//! with one local activity (one database transaction). The SDK polls the run method after
//! every handler of a workflow task, so however many updates or signals a task brings, their
//! writes share one transaction: reservations do not queue on the quota row one transaction
//! each, and a flood of payment callbacks does not cost an activity (and its history) each.

use super::inputs::{PaidWrites, ReservationWrite};
use sellwindow_domain::UnixMillis;
use std::collections::BTreeMap;

/// A queued write's place in line, handed back with its result.
pub type Ticket = u64;

/// A write that can take in another of its kind made at the same moment.
pub trait Batch: Sized {
    fn at(&self) -> UnixMillis;
    fn absorb(&mut self, later: Self);
}

impl Batch for ReservationWrite {
    fn at(&self) -> UnixMillis {
        self.at
    }

    fn absorb(&mut self, later: Self) {
        self.orders.extend(later.orders);
        self.answers.extend(later.answers);
        // The later closer is the one whose units filled the quota last.
        if later.quota_closed_by.is_some() {
            self.quota_closed_by = later.quota_closed_by;
        }
        // The threshold is reached once; the first to report it carries the figures.
        self.threshold_reached = self.threshold_reached.or(later.threshold_reached);
    }
}

impl Batch for PaidWrites {
    fn at(&self) -> UnixMillis {
        self.at
    }

    fn absorb(&mut self, later: Self) {
        self.payments.extend(later.payments);
    }
}

#[derive(Debug)]
pub struct WriteQueue<W> {
    next: Ticket,
    pending: Vec<(Ticket, W)>,
    /// Results not yet picked up by their handlers (`Err` holds why the write failed).
    done: BTreeMap<Ticket, Result<(), String>>,
}

impl<W> Default for WriteQueue<W> {
    fn default() -> Self {
        Self {
            next: 0,
            pending: Vec::new(),
            done: BTreeMap::new(),
        }
    }
}

impl<W: Batch> WriteQueue<W> {
    pub fn push(&mut self, write: W) -> Ticket {
        let ticket = self.next;
        self.next += 1;
        self.pending.push((ticket, write));
        ticket
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The queued writes made at the same moment as the first (rows carry one time), merged
    /// into one, with their tickets.
    pub fn take(&mut self) -> Option<(Vec<Ticket>, W)> {
        let at = self.pending.first()?.1.at();
        let n = self
            .pending
            .iter()
            .take_while(|(_, w)| w.at() == at)
            .count();
        let mut taken = self.pending.drain(..n);
        let (first_ticket, mut merged) = taken.next().expect("at least one is queued");
        let mut tickets = vec![first_ticket];
        for (ticket, w) in taken {
            tickets.push(ticket);
            merged.absorb(w);
        }
        Some((tickets, merged))
    }

    pub fn finish(&mut self, tickets: &[Ticket], result: Result<(), String>) {
        for t in tickets {
            self.done.insert(*t, result.clone());
        }
    }

    pub fn is_done(&self, ticket: Ticket) -> bool {
        self.done.contains_key(&ticket)
    }

    /// Hands a finished write's result to its handler (once).
    pub fn result(&mut self, ticket: Ticket) -> Option<Result<(), String>> {
        self.done.remove(&ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::inputs::{ListingKey, PaidPayment};
    use sellwindow_domain::*;

    fn write(orders: &[&str], at: i64) -> ReservationWrite {
        ReservationWrite {
            listing: ListingKey {
                sell_window_id: SellWindowId::parse("sw-1").unwrap(),
                product_id: ProductId::parse("p-1").unwrap(),
            },
            orders: orders
                .iter()
                .map(|id| NewOrder {
                    order_id: OrderId::parse(*id).unwrap(),
                    customer_id: CustomerId::parse("c-1").unwrap(),
                    qty: Qty::new(1).unwrap(),
                    amount: Money::new(Currency::parse("TWD").unwrap(), 100).unwrap(),
                    status: OrderStatus::Reserved,
                    payment_due_at: None,
                })
                .collect(),
            quota_closed_by: None,
            threshold_reached: None,
            at: UnixMillis(at),
            answers: Vec::new(),
        }
    }

    fn ids(w: &ReservationWrite) -> Vec<&str> {
        w.orders.iter().map(|o| o.order_id.as_str()).collect()
    }

    #[test]
    fn writes_taken_at_one_moment_merge_into_one_in_queue_order() {
        let mut q = WriteQueue::default();
        let a = q.push(write(&["o-1", "o-2"], 5));
        let mut b = write(&["o-3"], 5);
        b.threshold_reached = Some((3, 3));
        b.quota_closed_by = Some(OrderId::parse("o-3").unwrap());
        let b = q.push(b);
        let mut c = write(&["o-4"], 5);
        c.threshold_reached = Some((9, 9));
        c.quota_closed_by = Some(OrderId::parse("o-4").unwrap());
        let c = q.push(c);
        let later = q.push(write(&["o-5"], 6));

        let (tickets, merged) = q.take().unwrap();
        assert_eq!(tickets, vec![a, b, c]);
        assert_eq!(ids(&merged), vec!["o-1", "o-2", "o-3", "o-4"]);
        assert_eq!(merged.threshold_reached, Some((3, 3)));
        assert_eq!(merged.quota_closed_by.unwrap().as_str(), "o-4");
        // A write from a later moment waits for a write of its own (its rows carry its time).
        assert!(q.has_pending());
        let (tickets, rest) = q.take().unwrap();
        assert_eq!((tickets, ids(&rest)), (vec![later], vec!["o-5"]));
        assert!(q.take().is_none());
    }

    #[test]
    fn each_handler_gets_the_result_of_the_write_that_carried_it_once() {
        let mut q = WriteQueue::default();
        let a = q.push(write(&["o-1"], 1));
        let b = q.push(write(&["o-2"], 1));
        let (tickets, _) = q.take().unwrap();
        assert!(!q.is_done(a));
        q.finish(&tickets, Err("database down".into()));
        assert!(q.is_done(a) && q.is_done(b));
        assert_eq!(q.result(a), Some(Err("database down".into())));
        assert_eq!(q.result(a), None);
        assert_eq!(q.result(b), Some(Err("database down".into())));
        let c = q.push(write(&["o-3"], 2));
        let (tickets, _) = q.take().unwrap();
        q.finish(&tickets, Ok(()));
        assert_eq!(q.result(c), Some(Ok(())));
    }

    fn paid(orders: &[&str], at: i64) -> PaidWrites {
        PaidWrites {
            listing: write(&[], at).listing,
            payments: orders
                .iter()
                .map(|id| PaidPayment {
                    order_id: OrderId::parse(*id).unwrap(),
                    payment_id: PaymentId::parse(format!("pay-{id}")).unwrap(),
                    customer_id: CustomerId::parse("c-1").unwrap(),
                    qty: Qty::new(1).unwrap(),
                    event_id: format!("evt-{id}"),
                })
                .collect(),
            at: UnixMillis(at),
        }
    }

    #[test]
    fn payments_of_one_moment_are_written_together_in_arrival_order() {
        let mut q = WriteQueue::default();
        let a = q.push(paid(&["o-1"], 7));
        let b = q.push(paid(&["o-2", "o-3"], 7));
        let later = q.push(paid(&["o-4"], 8));
        let (tickets, merged) = q.take().unwrap();
        assert_eq!(tickets, vec![a, b]);
        let order = |w: &PaidWrites| -> Vec<String> {
            w.payments.iter().map(|p| p.order_id.to_string()).collect()
        };
        assert_eq!(order(&merged), vec!["o-1", "o-2", "o-3"]);
        let (tickets, rest) = q.take().unwrap();
        assert_eq!(
            (tickets, order(&rest)),
            (vec![later], vec!["o-4".to_string()])
        );
    }
}
