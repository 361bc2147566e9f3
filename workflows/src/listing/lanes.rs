//! The listing's writes waiting for their writer. Handlers decide in the listing at once, then
//! queue what must be written in a lane and wait for its ticket; one writer per lane takes the
//! queued jobs in order, joins those that can share one transaction, writes them with one
//! local activity, and hands each ticket its answer. Because each lane is served in order by
//! one writer, the database sees a lane's writes in the order the listing decided them.
//!
//! Two lanes: reservations (new orders only, so they commute with everything else the
//! listing writes while it takes reservations) and every other write, in one order. A
//! decision that must see every reservation decided before it (confirm, close, cancel) waits
//! until the reservations lane is done through the ticket it last handed out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A queued job's place in its lane, handed back with its answer.
pub type Ticket = u64;

#[derive(Debug)]
pub struct Lane<J, R> {
    next: Ticket,
    pending: VecDeque<(Ticket, J)>,
    in_flight: BTreeSet<Ticket>,
    /// Answers not yet picked up.
    done: BTreeMap<Ticket, R>,
    /// Tickets nobody waits on (their answers are dropped).
    unawaited: BTreeSet<Ticket>,
    /// Jobs queued after this ticket wait: a decision is being written first.
    hold_after: Option<Ticket>,
}

impl<J, R> Default for Lane<J, R> {
    fn default() -> Self {
        Self {
            next: 1,
            pending: VecDeque::new(),
            in_flight: BTreeSet::new(),
            done: BTreeMap::new(),
            unawaited: BTreeSet::new(),
            hold_after: None,
        }
    }
}

impl<J, R> Lane<J, R> {
    /// Queues a job whose answer someone will pick up with [`Self::take_answer`].
    pub fn push(&mut self, job: J) -> Ticket {
        let ticket = self.next;
        self.next += 1;
        self.pending.push_back((ticket, job));
        ticket
    }

    /// Queues a job nobody waits on.
    pub fn push_unawaited(&mut self, job: J) {
        let ticket = self.push(job);
        self.unawaited.insert(ticket);
    }

    /// The newest ticket handed out (0 when none was).
    pub fn last_ticket(&self) -> Ticket {
        self.next - 1
    }

    /// Jobs queued from now on wait until [`Self::release`].
    pub fn hold(&mut self) {
        self.hold_after = Some(self.last_ticket());
    }

    pub fn release(&mut self) {
        self.hold_after = None;
    }

    /// Whether the writer has a job it may take now.
    pub fn has_work(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|(t, _)| self.hold_after.is_none_or(|h| *t <= h))
    }

    /// Takes the first job and every following one `joins` accepts (given the jobs taken so
    /// far and the next), stopping at the first it refuses or a held one.
    pub fn take(&mut self, mut joins: impl FnMut(&[(Ticket, J)], &J) -> bool) -> Vec<(Ticket, J)> {
        let mut taken = Vec::new();
        while self.has_work() {
            let (_, next) = self.pending.front().expect("has work");
            if !taken.is_empty() && !joins(&taken, next) {
                break;
            }
            let (ticket, job) = self.pending.pop_front().expect("has work");
            self.in_flight.insert(ticket);
            taken.push((ticket, job));
        }
        taken
    }

    /// Records a taken job's answer: it is written.
    pub fn finish(&mut self, ticket: Ticket, answer: R) {
        self.answer(ticket, answer);
        self.settle(ticket);
    }

    /// Hands a taken job's answer to its requester while the writer still works on it (the
    /// job counts as not written for [`Self::done_through`] until [`Self::settle`]).
    pub fn answer(&mut self, ticket: Ticket, answer: R) {
        if !self.unawaited.remove(&ticket) {
            self.done.insert(ticket, answer);
        }
    }

    pub fn settle(&mut self, ticket: Ticket) {
        self.in_flight.remove(&ticket);
    }

    pub fn is_done(&self, ticket: Ticket) -> bool {
        self.done.contains_key(&ticket)
    }

    /// Hands a finished job's answer to whoever waits on it (once).
    pub fn take_answer(&mut self, ticket: Ticket) -> Option<R> {
        self.done.remove(&ticket)
    }

    /// Whether every job queued up to `ticket` has been written.
    pub fn done_through(&self, ticket: Ticket) -> bool {
        self.pending.front().is_none_or(|(t, _)| *t > ticket)
            && self.in_flight.first().is_none_or(|t| *t > ticket)
    }

    /// Nothing queued, nothing being written.
    pub fn idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    /// The jobs still queued (for a hand-over's snapshot).
    pub fn pending(&self) -> impl Iterator<Item = &J> {
        self.pending.iter().map(|(_, j)| j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_taken_in_order_joined_while_they_can_and_answered_once() {
        let mut lane: Lane<u32, &str> = Lane::default();
        let a = lane.push(1);
        let b = lane.push(2);
        lane.push_unawaited(3);
        let d = lane.push(10);
        // Joins jobs below 10.
        let taken = lane.take(|_, next| *next < 10);
        assert_eq!(taken.iter().map(|(_, j)| *j).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(!lane.done_through(a));
        for (t, _) in &taken {
            lane.finish(*t, "ok");
        }
        assert!(lane.done_through(b + 1) && !lane.done_through(d));
        assert_eq!(lane.take_answer(a), Some("ok"));
        assert_eq!(lane.take_answer(a), None);
        assert!(lane.is_done(b));
        let rest = lane.take(|_, _| true);
        assert_eq!(rest, vec![(d, 10)]);
        lane.finish(d, "ten");
        assert!(lane.idle());
        // The unawaited job's answer was dropped.
        assert_eq!(lane.done.len(), 2);
        // Answered early, a job still counts until settled.
        let e = lane.push(11);
        lane.take(|_, _| true);
        lane.answer(e, "early");
        assert!(lane.is_done(e) && !lane.done_through(e));
        lane.settle(e);
        assert!(lane.done_through(e) && lane.idle());
    }

    #[test]
    fn a_hold_keeps_later_jobs_back_until_released() {
        let mut lane: Lane<u32, ()> = Lane::default();
        lane.push(1);
        lane.hold();
        let later = lane.push(2);
        assert_eq!(lane.take(|_, _| true).len(), 1);
        assert!(!lane.has_work());
        lane.release();
        assert_eq!(lane.take(|_, _| true), vec![(later, 2)]);
    }
}
