//! The listing's writes waiting for their writer. Handlers and the run method decide in the
//! listing at once, then queue what must be written and wait for its ticket; the one writer
//! takes the queued jobs in order, writes each, and hands its ticket the answer. Because one writer serves the queue in order, the
//! database sees the workflow's writes in the order the listing decided them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A queued job's place in the queue, handed back with its answer.
pub type Ticket = u64;

#[derive(Debug)]
pub struct WriteQueue<J, R> {
    next: Ticket,
    pending: VecDeque<(Ticket, J)>,
    in_flight: BTreeSet<Ticket>,
    /// Answers not yet picked up.
    done: BTreeMap<Ticket, R>,
    /// Tickets nobody waits on (their answers are dropped).
    unawaited: BTreeSet<Ticket>,
}

impl<J, R> Default for WriteQueue<J, R> {
    fn default() -> Self {
        Self {
            next: 1,
            pending: VecDeque::new(),
            in_flight: BTreeSet::new(),
            done: BTreeMap::new(),
            unawaited: BTreeSet::new(),
        }
    }
}

impl<J, R> WriteQueue<J, R> {
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

    /// Whether the writer has a job to take.
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the first job.
    pub fn take(&mut self) -> Option<(Ticket, J)> {
        let (ticket, job) = self.pending.pop_front()?;
        self.in_flight.insert(ticket);
        Some((ticket, job))
    }

    /// Records a taken job's answer: it is written.
    pub fn finish(&mut self, ticket: Ticket, answer: R) {
        self.in_flight.remove(&ticket);
        if !self.unawaited.remove(&ticket) {
            self.done.insert(ticket, answer);
        }
    }

    pub fn is_done(&self, ticket: Ticket) -> bool {
        self.done.contains_key(&ticket)
    }

    /// Hands a finished job's answer to whoever waits on it (once).
    pub fn take_answer(&mut self, ticket: Ticket) -> Option<R> {
        self.done.remove(&ticket)
    }

    /// Nothing queued, nothing being written.
    pub fn idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    /// The jobs still queued.
    pub fn pending(&self) -> impl Iterator<Item = &J> {
        self.pending.iter().map(|(_, j)| j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_taken_in_order_and_answered_once() {
        let mut queue: WriteQueue<u32, &str> = WriteQueue::default();
        let a = queue.push(1);
        queue.push_unawaited(2);
        assert!(queue.has_work());
        let (t, job) = queue.take().unwrap();
        assert_eq!((t, job), (a, 1));
        assert!(!queue.is_done(a));
        queue.finish(t, "ok");
        assert_eq!(queue.take_answer(a), Some("ok"));
        assert_eq!(queue.take_answer(a), None);
        let (t, job) = queue.take().unwrap();
        assert_eq!(job, 2);
        assert!(!queue.idle());
        queue.finish(t, "dropped");
        assert!(queue.idle() && queue.done.is_empty(), "nobody waits on 2");
        assert!(queue.take().is_none());
    }
}
